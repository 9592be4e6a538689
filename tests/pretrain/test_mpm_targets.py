"""MPM after JetSSL / Leigh et al.: normalised per-group targets with stated weights, one joint particle-ID
class, mask tokens ordered among the hidden particles only, every head's skill over its marginal baseline
(in summary.json); RS3L's jet-kinematics baseline next to the model's top-1; pretraining run variants
(seed, unlabelled size, classes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fixtures.train import FEATURES, make_split_dataset

from jetfm.models.part import ParTBackbone, ParTSize
from jetfm.pretrain.kinematic_baseline import kinematic_top1
from jetfm.pretrain.masking import (
    LossSettings,
    MaskedParticleDecoder,
    MaskedParticleModel,
    TargetScaler,
    TargetSpec,
    continuous_loss,
    skills,
)
from jetfm.pretrain.run import pretrain_config, run_pretraining
from jetfm.pretrain.variants import backbone_label, event_selection, parse_variant

TINY = {"embed_dim": 16, "depth": 1, "heads": 2, "cls_depth": 1, "pair_dims": (8,), "dropout": 0.0}
FAST = {"progress": False, "log_every": 1, "batch_size": 16, "warmup_steps": 3, "block_size": 64,
        "shuffle_buffer": 128, "eval_every": 1000, "checkpoint_every": 1000, "eval_batches": 4}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_split_dataset(tmp_path_factory.mktemp("h5"), n_events=200, n_view_events=40, max_particles=24)


def _config(steps: int, **pretrain: object) -> dict:
    return {"seed": 3, "train": FAST, "pretrain": {"size": TINY, "train": {"max_steps": steps, "lr": 3e-3},
                                                   **pretrain}}  # fmt: skip


def test_targets_are_grouped_and_particle_id_is_one_joint_class() -> None:
    spec = TargetSpec.from_names(list(FEATURES), len(FEATURES))
    groups = dict(spec.groups)
    assert [FEATURES[i] for i in groups["track"]] == ["part_d0", "part_d0err", "part_dz", "part_dzerr"]
    assert "part_pt_log" in [FEATURES[i] for i in groups["kinematics"]] and spec.id_classes == 15
    x = torch.zeros(3, len(FEATURES))
    x[0, FEATURES.index("part_charge")], x[0, FEATURES.index("part_isPhoton")] = -1, 1  # type 2, charge -1
    x[1, FEATURES.index("part_charge")], x[1, FEATURES.index("part_isMuon")] = 1, 1  # type 4, charge +1
    x[2, FEATURES.index("part_isChargedHadron")] = 1  # type 0, neutral
    assert spec.id_target(x).tolist() == [2 * 3 + 0, 4 * 3 + 2, 0 * 3 + 1]


def test_loss_is_normalised_weighted_and_skill_is_zero_for_the_baseline_one_when_perfect() -> None:
    rng = torch.Generator().manual_seed(0)
    spec = TargetSpec((("kinematics", (0, 1)), ("track", (2,))), None, ())
    raw = torch.randn(500, 3, generator=rng) * torch.tensor([10.0, 0.1, 1.0]) + torch.tensor([5.0, 0, 0])
    scaler = TargetScaler(3, 0)
    scaler.fit(raw, None)
    t = scaler.normalise(raw)
    assert t.mean(0).abs().max() < 1e-5 and (t.std(0) - 1).abs().max() < 1e-3  # each feature standardised
    settings = LossSettings("l1", (("kinematics", 2.0), ("track", 0.0), ("id", 1.0)))
    perfect = continuous_loss(t, raw, spec, scaler, settings)
    marginal = continuous_loss(scaler.median.expand(500, 3), raw, spec, scaler, settings)
    assert float(perfect["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(marginal["loss"]) == pytest.approx(2.0 * float(marginal["kinematics"]))  # track weight 0
    means = {k: float(v) for k, v in marginal.items()}
    assert skills(means) == pytest.approx({"skill_kinematics": 0.0, "skill_track": 0.0}, abs=1e-6)
    assert skills({k: float(v) for k, v in perfect.items()})["skill_kinematics"] == pytest.approx(1.0)


def test_mask_tokens_know_their_order_among_hidden_particles_not_their_slot() -> None:
    """Moving the hidden particles to other slots (same order among themselves) and shuffling the visible
    ones changes nothing: the decoder gets no absolute pT rank to interpolate from."""
    torch.manual_seed(0)
    p, f = 8, 17
    feats, vecs = torch.randn(1, p, f), torch.rand(1, p, 4) + 1.0
    mask = torch.ones(1, p, dtype=torch.bool)
    hidden = torch.zeros(1, p, dtype=torch.bool)
    hidden[0, [2, 5]] = True
    model = MaskedParticleModel(ParTBackbone(f, ParTSize(**TINY)), MaskedParticleDecoder(16, 2, p, 6), None)
    model.eval()
    perm = torch.tensor([2, 7, 0, 3, 1, 6, 4, 5])  # new slot i holds old particle perm[i]: hidden at 0 and 7
    a = model(feats, vecs, mask, hidden)
    b = model(feats[:, perm], vecs[:, perm], mask, hidden[:, perm])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_mpm_reports_every_heads_skill_over_its_marginal_baseline(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    result = run_pretraining(_config(60), "mpm", {"train": data["train"], "val": data["val"]}, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for head in ("kinematics", "track", "id"):
        assert f"val_skill_{head}" in summary and f"val_base_{head}" in summary, head
        base, model = summary[f"val_base_{head}"], summary.get(f"val_{head}_nll", summary[f"val_{head}"])
        assert summary[f"val_skill_{head}"] == pytest.approx(1 - model / base, rel=1e-6)
    # the fixture's kinematics are learnable from the visible particles; its ID and track features are noise
    assert summary["val_skill_kinematics"] > 0.0
    assert summary["objective"]["loss"] == "l1" and summary["objective"]["mask_order"] == "among-hidden"
    with open(tmp_path / "history.csv") as fh:  # the heads' validation columns (set at build) reach the CSV
        rows = [r for r in csv.DictReader(fh) if r["val_loss"]]
    assert rows and float(rows[-1]["val_skill_kinematics"]) == pytest.approx(
        summary["val_skill_kinematics"], abs=1e-6
    )
    print({k: round(v, 3) for k, v in result["val"].items() if "skill" in k})


def test_rs3l_summary_has_the_kinematics_only_baseline_next_to_the_models_top1(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    # the fixture's views share their jet features exactly: kinematics alone match every view
    assert kinematic_top1(data["val"], 4)["val_positive_top1_kinematics"] == pytest.approx(1.0)
    run_pretraining(_config(4, rs3l={"events_per_batch": 4}), "rs3l", data, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "val_positive_top1" in summary and summary["val_positive_top1_kinematics"] == pytest.approx(1.0)


def test_pretraining_variants_seed_unlabelled_size_and_classes(data: dict[str, list[str]]) -> None:
    v = parse_variant("mpm-u0.25-s2")
    assert (v.method, v.unlabelled, v.seed_index, v.label) == ("mpm", 0.25, 2, "mpm-u0.25-s2")
    assert parse_variant("rs3l").label == "rs3l" and parse_variant("mpm_tok-s1").method == "mpm_tok"
    with pytest.raises(ValueError, match=r"unlabelled fraction 2\.0 must be in"):
        parse_variant("mpm-u2")
    assert [backbone_label("rs3l-probe", i, 2) for i in range(3)] == ["rs3l", "rs3l-s1", "rs3l"]
    base = pretrain_config(_config(5), "mpm").seed
    assert pretrain_config(_config(5), "mpm-s1").seed == base + 1009
    quarter, _ = event_selection(data["train"], 0.25, None)
    half, counts = event_selection(data["train"], 0.5, None)
    q, h = quarter[data["train"][0]], half[data["train"][0]]
    assert not (q & ~h).any() and 0.1 < q.mean() < 0.4 and counts["rows_kept"] == int(h.sum())
    with h5py.File(data["train"][0], "r") as f:
        event, label = f["event_id"][:], f["label"][:]
    for e in np.unique(event):  # views of one event are kept or dropped together
        assert len(set(h[event == e].tolist())) == 1
    only, _ = event_selection(data["train"], 1.0, [0])
    assert set(label[only[data["train"][0]]].tolist()) == {0}
