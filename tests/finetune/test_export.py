"""Reuse of a pretrained backbone: `jetfm export` writes weights + model card only; `jetfm finetune --from`
reads the architecture from the file, fine-tunes on a user's 4-vector-only HDF5 through the adapter, and
refuses data whose features differ (naming both); layer-wise LR decay, freeze-then-unfreeze and the
best-validation checkpoint do what they say."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from fixtures.train import make_jets, make_split_dataset

from jetfm.cli import main
from jetfm.finetune.adapter import four_vector_features
from jetfm.finetune.export import export_backbone
from jetfm.finetune.run import run_finetuning
from jetfm.finetune.schedule import layerwise_scales
from jetfm.models.part import ParTBackbone, ParTSize
from jetfm.pretrain.run import run_pretraining

TINY = {"embed_dim": 16, "depth": 1, "heads": 2, "cls_depth": 1, "pair_dims": [8], "dropout": 0.0}
FAST = {"progress": False, "log_every": 1, "batch_size": 16, "warmup_steps": 2, "block_size": 64,
        "shuffle_buffer": 128, "eval_every": 1000, "checkpoint_every": 1000, "eval_batches": 2}  # fmt: skip


def _config(**finetune: object) -> dict:
    return {"dataset": "fx", "seed": 5, "train": FAST, "preprocess": {"shards_per_split": 1},
            "pretrain": {"size": TINY, "train": {"max_steps": 6}},
            "finetune": {"train": {"max_steps": 6}, **finetune}}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_split_dataset(tmp_path_factory.mktemp("h5"), n_events=160, n_view_events=20, max_particles=24)


@pytest.fixture(scope="module")
def exported(data: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpm")
    run_pretraining(_config(), "mpm", data, out)
    assert main(["export", str(out / "checkpoint.pt")]) == 0  # the stage: default <run>/export/
    return out / "export"


def _user_file(path: Path, n: int = 300) -> Path:
    """A user's HDF5: particle 4-vectors and labels only (3 classes 0..2), no jetfm features or attrs."""
    jets = make_jets(n, np.random.default_rng(7), max_particles=20)
    with h5py.File(path, "w") as f:
        for i, name in enumerate(("part_px", "part_py", "part_pz", "part_energy")):
            f[name] = jets["part_vectors"][..., i]
        f["label"] = np.searchsorted([0, 1, 8], jets["label"])
        f.attrs["classes"] = json.dumps(["QCD", "Hbb", "Tbqq"])
    return path


def test_export_holds_the_backbone_and_a_model_card_only(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot name the backbone's inputs: no training shard given"):
        torch.save(torch.load(exported.parent / "checkpoint.pt", weights_only=True), tmp_path / "c.pt")
        export_backbone(tmp_path / "c.pt", tmp_path / "out")  # no summary.json next to it, no --train
    raw = torch.load(exported / "backbone.pt", weights_only=True)
    assert raw["format"] == "jetfm-backbone-v1"
    assert not {"optimizer", "scheduler", "ranks", "history"} & set(raw)
    assert raw["architecture"]["size"]["embed_dim"] == 16 and raw["inputs"]["num_features"] == 17
    assert all(not k.startswith(("backbone.", "decoder.")) for k in raw["state"])
    card = json.loads((exported / "model_card.json").read_text())
    for key in ("architecture", "inputs", "training", "metrics", "provenance", "intended_use", "limits"):
        assert card[key], key
    assert card["inputs"]["feature_names"][0] == "part_pt_log" and card["training"]["steps"] == 6
    assert card["architecture"]["parameters"] == sum(v.numel() for v in raw["state"].values())
    assert "val_loss" in card["metrics"]
    assert "Intended use" in (exported / "model_card.md").read_text()


def test_a_backbone_exported_and_fine_tuned_on_a_four_vector_only_file(
    exported: Path, tmp_path: Path
) -> None:
    config = _config()
    config["pretrain"]["size"] = {"preset": "tiny"}  # a different size in config: the file's must win
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    argv = ["finetune", "--config", str(tmp_path / "c.yaml"), "--from", str(exported / "backbone.pt"),
            "--data", str(_user_file(tmp_path / "user.h5")), "--adapter", "four_vectors", "--out", str(out),
            "--fraction", "1.0"]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["pretrained"]["size"]["embed_dim"] == 16 and m["confusion_classes"] == ["QCD", "Hbb", "Tbqq"]
    assert {"part_pt_log", "part_deltaR", "part_deta", "part_dphi"} <= set(m["adapter"]["computed"])
    assert "part_charge" in m["adapter"]["filled_with_zero"]
    assert m["labelled_jets"] > 0 and 0 <= m["accuracy"] <= 1
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert state["backbone.embed.net.1.weight"].shape == (16, 17)


def test_adapter_reproduces_the_kinematic_features_of_the_jetfm_shards() -> None:
    """The fixture's shards carry features computed from the same 4-vectors: the adapter must agree."""
    from fixtures.train import FEATURES

    jets = make_jets(20, np.random.default_rng(3), max_particles=16)
    feats, _, record = four_vector_features(jets["part_vectors"], jets["part_mask"], FEATURES)
    m = jets["part_mask"]
    for name in ("part_pt_log", "part_deta", "part_dphi"):
        j = FEATURES.index(name)
        # the fixture's jet axis is the generated one, the adapter's the 4-vector sum: close, not equal
        assert np.abs(feats[..., j][m] - jets["part_features"][..., j][m]).mean() < 0.15, name
    assert record["filled_with_zero"] == [n for n in FEATURES if n not in record["computed"]]


def test_from_refuses_a_backbone_whose_inputs_do_not_match_naming_both(
    exported: Path, data: dict[str, list[str]], tmp_path: Path
) -> None:
    other = {}
    for split, files in data.items():
        other[split] = [str(tmp_path / f"{split}.h5")]
        with h5py.File(files[0], "r") as src, h5py.File(other[split][0], "w") as dst:
            for k in src:
                src.copy(k, dst)
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            names = json.loads(src.attrs["feature_names"])
            names["particle"] = [n.replace("part_d0", "part_ip2d") for n in names["particle"]]
            dst.attrs["feature_names"] = json.dumps(names)
    with pytest.raises(
        ValueError, match=r"expects particle features \[.*'part_d0'.*\], but .*has \[.*part_ip2d"
    ):
        run_finetuning(_config(), "mpm", 1.0, 0, other, str(tmp_path / "r"), str(exported / "backbone.pt"))


def test_layerwise_lr_decay_scales_each_backbone_level() -> None:
    backbone = ParTBackbone(17, ParTSize(**{**TINY, "depth": 2}))
    scales = layerwise_scales(backbone, 0.5, base=0.8)
    assert scales[id(backbone.cls_token)] == pytest.approx(0.8 * 0.5)
    assert scales[id(next(backbone.blocks[1].parameters()))] == pytest.approx(0.8 * 0.25)
    assert scales[id(next(backbone.blocks[0].parameters()))] == pytest.approx(0.8 * 0.125)
    assert scales[id(next(backbone.embed.parameters()))] == pytest.approx(0.8 * 0.0625)


def _history(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_freeze_then_unfreeze_keeps_the_backbone_fixed_only_while_frozen(
    exported: Path, data: dict[str, list[str]], tmp_path: Path
) -> None:
    start = torch.load(exported / "backbone.pt", weights_only=True)["state"]
    moved = {}
    for freeze in (6, 3):
        out = tmp_path / f"f{freeze}"
        run_finetuning(_config(freeze_steps=freeze, layer_decay=0.7), "mpm", 1.0, 0, data, str(out),
                       str(exported / "backbone.pt"))  # fmt: skip
        after = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
        moved[freeze] = not all(torch.equal(after[f"backbone.{k}"], v) for k, v in start.items())
        assert int(after["finetune_micro_batches"]) == 6
    assert moved == {6: False, 3: True}


def test_a_fine_tuning_run_keeps_its_best_validation_checkpoint(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    config = _config()
    config["finetune"]["train"] = {"max_steps": 8, "eval_every": 2, "lr": 0.03}
    result = run_finetuning(config, "scratch", 1.0, 0, data, str(tmp_path))
    rows = [r for r in _history(tmp_path / "history.csv") if r["val_loss"]]
    losses = {int(r["step"]): float(r["val_loss"]) for r in rows}
    best_step = min(losses, key=lambda s: (losses[s], s))
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert len(losses) == 4 and best["step"] == best_step
    assert best["value"] == pytest.approx(losses[best_step], abs=1e-6)
    selected = result["metrics"]["selected"]
    assert selected["step"] == best_step and selected["metric"] == "val_loss"
    # the test metrics are those of the best weights: re-evaluating them gives the same accuracy
    from jetfm.models import build_model
    from jetfm.train.config import TrainConfig
    from jetfm.train.objectives import predict

    model = build_model("part", 17, 8, 10, **TINY)
    model.load_state_dict(best["model"])
    probs, labels = predict(model, data["test"], TrainConfig(eval_batch_size=64), torch.device("cpu"))
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(result["metrics"]["accuracy"])
    assert (tmp_path / "test_predictions.npz").is_file()


def test_the_protocol_end_to_end_sweep_choice_paired_gains_and_headline(
    data: dict[str, list[str]], exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep points -> choice on validation -> arms with the chosen hyperparameters -> table and headline."""
    from jetfm.finetune.protocol import choice_path, choose, sweep_grid, sweep_run_dir
    from jetfm.finetune.report import efficiency_from_runs, headline_rst

    monkeypatch.chdir(tmp_path)  # results/ under tmp_path
    config = _config(sweep={"enabled": True, "lr": [0.001, 0.01], "methods": ["scratch", "mpm"]})
    config["finetune"]["train"] = {"max_steps": 4, "eval_every": 2}
    backbone = str(exported / "backbone.pt")
    grid = sweep_grid(config)
    for method, ckpt in (("scratch", None), ("mpm", backbone)):
        runs = []
        for i, point in enumerate(grid):
            out = sweep_run_dir("fx", method, 0.5, i)
            run_finetuning(config, method, 0.5, 0, data, out, ckpt, hparams=point)
            runs.append(f"{out}/metrics.json")
        choose(runs, grid, choice_path("fx", method, 0.5))
    metrics = []
    for method, ckpt in (("scratch", None), ("mpm", backbone), ("mpm-probe", backbone)):
        for seed in (0, 1):
            out = f"results/finetune/fx/{method}_0.5_{seed}"
            m = run_finetuning(config, method, 0.5, seed, data, out, ckpt)["metrics"]
            chosen = json.loads(Path(choice_path("fx", method.removesuffix("-probe"), 0.5)).read_text())
            expect_lr = chosen["chosen"]["lr"] if method != "mpm-probe" else 0.001  # probes are not swept
            assert m["hyperparameters"]["lr"] == pytest.approx(expect_lr)
            assert m["selected"]["step"] in (2, 4)  # the best-validation weights were tested
            metrics.append(f"{out}/metrics.json")
    summary = efficiency_from_runs(metrics, "e.csv", "e.json", "e.png")
    assert {s["method"] for s in summary} == {"scratch", "mpm", "mpm-probe"}
    eff = json.loads(Path("e.json").read_text())
    gains = {g["method"]: g for g in eff["gains"]["accuracy"]}
    assert gains["mpm"]["seeds"] == 2 and "bootstrap_se" in gains["mpm"]
    text = headline_rst("e.json")
    assert "chosen on validation accuracy" in text and "paired seeds" in text
