"""Scaling sweeps: the fit recovers a known law within its quoted uncertainties, the FLOP counter matches a
hand count, subsets are nested, a tiny grid runs end to end, and Snakemake reruns only missing or changed
cells."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from fixtures.train import make_dataset

from jetfm.config import validate_config
from jetfm.models import build_model
from jetfm.scaling import grid
from jetfm.scaling.fit import NAMES, analyse, law
from jetfm.scaling.flops import parameter_counts, training_step_flops
from jetfm.scaling.repetition import effective_data
from jetfm.scaling.subset import write_subset
from jetfm.scaling.sweep import run_sweep

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TRUTH = {"E": 0.45, "A": 8.0, "alpha": 0.35, "B": 12.0, "beta": 0.25}


def _synthetic_rows(rng: np.random.Generator, r_star: float = 4.0, rel_noise: float = 0.004) -> list[dict]:
    truth = tuple(TRUTH[k] for k in NAMES)
    rows = []
    for n in np.logspace(3, 6, 5):
        for d in np.logspace(3, 6, 5):
            for epochs in (1, 3, 9) if d <= 1e4 and n in (1e3, 1e6) else (1,):
                loss = law(truth, n, effective_data(d, epochs, r_star))
                sem = rel_noise * loss
                rows.append({"N": n, "D": d, "epochs": epochs, "val_loss": loss + rng.normal(0, sem),
                             "val_loss_sem": sem, "flops": 6 * n * d * epochs * 40,
                             "jets_seen": d * epochs})  # fmt: skip
    return rows


def test_fit_recovers_known_parameters_and_the_repetition_gain() -> None:
    fit = analyse(_synthetic_rows(np.random.default_rng(7)), {"bootstrap": 80, "seed": 1})
    assert fit["status"] == "ok" and fit["cells"] == 25, fit["reasons"]
    for name, true in TRUTH.items():
        p = fit["parameters"][name]
        assert p["p2.5"] <= true <= p["p97.5"], (name, p, true)
    gof = fit["goodness_of_fit"]
    assert gof["ndf"] == 20 and 0.3 < gof["chi2_per_ndf"] < 2.5, gof
    rep = fit["repetition"]["R_star"]
    assert abs(rep["value"] - 4.0) < 3 * rep["uncertainty"] and fit["repetition"]["constrained"], rep
    assert fit["repetition"]["omega"]["value"] == pytest.approx(1 + rep["value"])


def test_training_flops_of_a_tiny_part_equal_a_hand_count() -> None:
    """B jets of n particles, one particle block, one class block; every matmul counted by hand."""
    torch.manual_seed(0)
    b, n, f, c, e, h, p1 = 3, 5, 17, 10, 8, 2, 4
    model = build_model("part", f, 8, c, embed_dim=e, depth=1, heads=h, cls_depth=1, pair_dims=(p1,),
                        embed_dims=(e,), dropout=0.0)  # fmt: skip
    batch = {
        "part_features": torch.randn(b, n, f),
        "part_vectors": torch.rand(b, n, 4) * 10 + torch.tensor([0, 0, 0, 30.0]),
        "part_mask": torch.ones(b, n, dtype=torch.bool), "jet_features": torch.randn(b, 8),
        "label": torch.tensor([0, 1, 2]),
    }  # fmt: skip
    t, pairs = b * n, b * n * (n + 1) // 2
    # A Linear costs 2 (forward) + 2 (weight grad) + 2 (input grad) x in x out per row: 6, except the pair
    # MLP's first layer, whose input (pair features) needs no gradient: 4.
    linear = 6 * t * f * e  # particle embedding
    linear += 6 * t * 4 * e * e + 6 * t * 2 * e * 4 * e  # q, k, v, proj; fc1, fc2 of the particle block
    linear += 6 * b * 2 * e * e + 6 * b * (n + 1) * 2 * e * e + 6 * b * 2 * e * 4 * e  # class block
    linear += 6 * b * e * c + 4 * pairs * 4 * p1 + 6 * pairs * p1 * h  # head, pair MLP
    # Attention QK and AV (2 x s_q x s_k x E each): with the pair bias SDPA runs unfused (backward 4 matmuls:
    # 3x forward), the class attention (per-key mask) runs SDPA's fused CPU kernel (backward 5 matmuls).
    attention = 3 * 4 * b * n * n * e + (4 + 10) * b * 1 * (n + 1) * e
    assert training_step_flops(model, batch) == linear + attention
    counts = parameter_counts(model)
    part = getattr(model, "backbone", model)  # the layers may sit in a backbone module
    embed = sum(p.numel() for p in (*part.embed.parameters(), *part.pair_embed.parameters()))
    assert counts["non_embedding"] == counts["total"] - embed > 0


def test_subsets_are_nested_deterministic_and_class_mixed(tmp_path: Path) -> None:
    files = make_dataset(tmp_path / "h5", n_train=600, n_val=64, n_test=64, shards=2)

    def rows(path: Path) -> set[tuple[int, float]]:
        with h5py.File(path, "r") as f:  # (label, leading-particle feature) identifies a synthetic jet
            return set(zip(f["label"][:].tolist(), f["part_features"][:, 0, 0].tolist(), strict=True))

    small = write_subset(files["train"], 100, tmp_path / "d100.h5", seed=3)
    write_subset(files["train"], 400, tmp_path / "d400.h5", seed=3)
    write_subset(files["train"], 100, tmp_path / "again.h5", seed=3)
    assert small["jets"] == 100 and len(small["labels"]) == 3  # all three fixture classes present
    assert rows(tmp_path / "d100.h5") <= rows(tmp_path / "d400.h5")
    assert rows(tmp_path / "d100.h5") == rows(tmp_path / "again.h5")
    write_subset(files["train"], 100, tmp_path / "other.h5", seed=4)
    assert rows(tmp_path / "other.h5") != rows(tmp_path / "d100.h5")
    with pytest.raises(ValueError, match="hold only 600 nominal jets"):
        write_subset(files["train"], 601, tmp_path / "too_many.h5", seed=3)


def test_cells_ids_settings_and_bad_grids() -> None:
    config = validate_config({"scaling": {"data_sizes": [64, 128], "epochs": [1, 2]}})
    ids = [c.id for c in grid.cells(config["scaling"])]
    assert ids == ["xs-D64-E1", "xs-D64-E2", "xs-D128-E1", "xs-D128-E2",
                   "s-D64-E1", "s-D64-E2", "s-D128-E1", "s-D128-E2"]  # fmt: skip
    settings = grid.cell_settings(config, "s-D128-E2")
    assert settings["steps"] == 128 // 32 * 2 and settings["learning_rates"] == pytest.approx(
        [0.008 * (16 / 32) ** -0.5], rel=1e-5
    )
    bounded = validate_config({"scaling": {"data_sizes": [64, 1024], "steps_floor": 10, "steps_cap": 20}})
    assert [grid.cell_settings(bounded, c)["steps"] for c in ("xs-D64-E1", "xs-D1024-E1")] == [10, 20]
    res = [grid.cell_resources(config, cid) for cid in ("xs-D64-E1", "s-D64-E1")]
    assert res[1]["mem_mb"] > res[0]["mem_mb"]  # memory grows with the model
    big = validate_config(
        {"scaling": {"data_sizes": [10**5, 10**7], "sizes": {"l": {"embed_dim": 512, "depth": 12}}}}
    )
    runtimes = [grid.cell_resources(big, cid)["runtime"] for cid in ("l-D100000-E1", "l-D10000000-E1")]
    assert runtimes[1] > 5 * runtimes[0], runtimes  # runtime grows with D (and N)
    big["slurm"]["max_runtime_minutes"]["gpu"] = 60  # a cell longer than the cap: a chain of resumed jobs
    requested, extra = grid.cell_walltime(big, "l-D10000000-E1")
    assert requested == 60 and extra == -(-runtimes[1] // 55) - 1 and extra > 0
    assert grid.cell_walltime(big, "l-D100000-E1") == (runtimes[0], 0) and runtimes[0] <= 60
    with pytest.raises(ValueError, match="not in the grid"):
        grid.lookup(config["scaling"], "m-D64-E1")
    config["scaling"]["cell_overrides"] = {"s-D99-E1": {"lr_multipliers": [2.0]}}
    with pytest.raises(ValueError, match=r"cell_overrides names cell\(s\) \['s-D99-E1'\]"):
        grid.cell_settings(config, "s-D64-E1")
    config["scaling"]["cell_overrides"] = {}
    config["scaling"]["train"] = {"batch_sise": 8}
    with pytest.raises(
        ValueError, match=r"scaling\.train: unknown training config key\(s\) \['batch_sise'\]"
    ):
        grid.cells(config["scaling"])
    config["scaling"]["train"] = {"batch_size": 32}
    config["scaling"]["data_sizes"] = [16]
    with pytest.raises(ValueError, match=r"below scaling\.train\.batch_size=32"):
        grid.cells(config["scaling"])


TINY = {
    "sizes": {"xs": {"embed_dim": 8, "depth": 1, "heads": 2, "cls_depth": 1, "pair_dims": [4]},
              "s": {"embed_dim": 16, "depth": 1, "heads": 2, "cls_depth": 1, "pair_dims": [4]}},
    "val_jets": 64, "train": {"batch_size": 16, "shuffle_buffer": 256, "block_size": 32},
    "flop_probe_batches": 1, "fit": {"bootstrap": 20},
}  # fmt: skip


def test_tiny_grid_end_to_end_in_process(tmp_path: Path) -> None:
    make_dataset(tmp_path / "h5", n_train=256, n_val=96, n_test=96, shards=1)
    config = validate_config(
        {"preprocess": {"shards_per_split": 1}, "scaling": {**TINY, "data_sizes": [32, 64, 128],
         "evaluations": 3, "seeds": {"count": 2, "data_sizes": [64]}}}
    )  # fmt: skip
    fit = run_sweep(config, tmp_path / "h5", tmp_path / "sweep", threads=1)
    with open(tmp_path / "sweep/runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["cell"] for r in rows] == [
        "xs-D32-E1", "xs-D64-E1", "xs-D64-E1-S1", "xs-D128-E1",
        "s-D32-E1", "s-D64-E1", "s-D64-E1-S1", "s-D128-E1",
    ]  # fmt: skip
    for r in rows:
        assert int(r["steps"]) == int(r["D"]) // 16 and int(r["val_jets"]) == 64
        assert 0.5 < float(r["flops_ratio_6ND_total"]) < 2.0, r  # measured compute ~ 6 N D (D in particles)
        assert float(r["val_loss"]) > 0 and float(r["val_loss_sem"]) > 0
        assert r["scored_on"] == "test" and 1 <= int(r["best_step"]) <= int(r["steps"])
    by_id = {r["cell"]: r for r in rows}
    for size in ("xs", "s"):  # a replica: another seed at the learning rate its primary chose
        primary, replica = by_id[f"{size}-D64-E1"], by_id[f"{size}-D64-E1-S1"]
        assert replica["lr"] == primary["lr"] and int(replica["seed"]) == int(primary["seed"]) + 1
        assert replica["val_loss"] != primary["val_loss"]
    assert fit["training_noise"]["replicated_cells"] == 2 and fit["training_noise"]["dof"] == 2
    assert int(rows[0]["N"]) < int(rows[-1]["N"])
    # learning curves: 3 log-spaced validation passes per run (fewer when the steps are too few to space)
    with open(tmp_path / "sweep/curves.csv") as fh:
        curves = list(csv.DictReader(fh))
    steps_of = {r["cell"]: sorted(int(p["step"]) for p in curves if p["cell"] == r["cell"]) for r in rows}
    assert steps_of["s-D128-E1"] == [1, 3, 8]
    assert all(s[-1] == int(by_id[c]["steps"]) for c, s in steps_of.items())
    # 2 sizes x 3 data sizes over < 1 decade: fitted, but reported underdetermined with its reasons
    assert fit["status"] == "underdetermined" and fit["goodness_of_fit"]["ndf"] == 1, fit["reasons"]
    saved = json.loads((tmp_path / "sweep/fit.json").read_text())
    assert set(saved["parameters"]) == set(NAMES) and saved["provenance"]["counts"]["cells"] == 8
    for name in ("loss_vs_n", "loss_vs_d", "isoflop", "residuals", "repetition", "learning_curves", "corner"):
        assert (tmp_path / f"sweep/{name}.png").stat().st_size > 5000
    # A second call finds every cell's result.json current and trains nothing.
    mtime = {c: (tmp_path / f"sweep/cells/{c}/result.json").stat().st_mtime_ns for c in by_id}
    run_sweep(config, tmp_path / "h5", tmp_path / "sweep")
    assert all((tmp_path / f"sweep/cells/{c}/result.json").stat().st_mtime_ns == t for c, t in mtime.items())
    # A cell whose job died after training continues from its checkpoint: the same loss, no steps redone.
    result = tmp_path / "sweep/cells/s-D128-E1/result.json"
    before = json.loads(result.read_text())
    result.unlink()
    history = next((tmp_path / "sweep/cells/s-D128-E1").glob("lr*/history.csv"))
    rows_before = history.read_text()
    run_sweep(config, tmp_path / "h5", tmp_path / "sweep")
    after = json.loads(result.read_text())
    assert after["val_loss"] == before["val_loss"] and history.read_text() == rows_before
    # A changed setting reruns that cell only; a best learning rate on the grid's edge is extended once.
    mtime = {c: (tmp_path / f"sweep/cells/{c}/result.json").stat().st_mtime_ns for c in by_id}
    config["scaling"]["cell_overrides"] = {"xs-D128-E1": {"lr_multipliers": [0.001, 0.008]}}
    run_sweep(config, tmp_path / "h5", tmp_path / "sweep")
    changed = json.loads((tmp_path / "sweep/cells/xs-D128-E1/result.json").read_text())
    assert changed["lr_extended"] == 0 and len(changed["lr_candidates"]) == 2  # extend defaults to 0
    rerun = [c for c in by_id if (tmp_path / f"sweep/cells/{c}/result.json").stat().st_mtime_ns != mtime[c]]
    assert rerun == ["xs-D128-E1"]
    config["scaling"]["lr"]["extend"] = 1  # far too small rates: the best is the top edge, one more tried
    run_sweep(config, tmp_path / "h5", tmp_path / "sweep")
    extended = json.loads((tmp_path / "sweep/cells/xs-D128-E1/result.json").read_text())
    top = changed["lr_candidates"][1]
    assert extended["lr_extended"] == 1 and extended["lr_candidates"] == pytest.approx(
        [*changed["lr_candidates"], top * 8], rel=1e-4
    )


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETFM_SLURM_")}  # default partitions
    return subprocess.run(
        [str(SNAKEMAKE), "-c2", "--directory", str(workdir), "-s", str(workdir / "Snakefile"), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def _planned_cells(workdir: Path) -> list[str]:
    proc = _snakemake(workdir, "-n", "scaling_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(set(re.findall(r"wildcards: cell=(\S+)", proc.stdout + proc.stderr)))


@pytest.mark.slow
def test_snakemake_reruns_only_missing_or_changed_cells(tmp_path: Path) -> None:
    make_dataset(tmp_path / "results/h5/fx", n_train=128, n_val=96, n_test=96, shards=1)
    config = {"dataset": "fx", "preprocess": {"shards_per_split": 1}, "scaling": {**TINY, "data_sizes": [64]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        f'include: "{REPO}/workflow/rules/common.smk"\n'
        f'include: "{REPO}/workflow/rules/scaling.smk"\n'
    )
    proc = _snakemake(tmp_path, "scaling_all")
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = tmp_path / "results/scaling/tiny"
    assert len((sweep / "runs.csv").read_text().splitlines()) == 1 + 2
    assert json.loads((sweep / "fit.json").read_text())["status"] == "underdetermined"  # 2 cells: no fit
    assert "cell xs-D64-E1: N=" in (tmp_path / "logs/scaling/tiny/xs-D64-E1.log").read_text()

    assert _planned_cells(tmp_path) == []  # finished cells are not rerun

    # Under the Slurm profile each cell is a GPU job whose runtime and memory come from the cell.
    proc = _snakemake(tmp_path, "--profile", str(REPO / "profiles/slurm"), "-n", "--forceall", "scaling_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    requests = dict(re.findall(r"wildcards: cell=(\S+)\n\s+resources: (.*)", proc.stdout + proc.stderr))
    assert set(requests) == {"xs-D64-E1", "s-D64-E1"}, requests
    for cell, line in requests.items():
        want = grid.cell_resources(validate_config(config), cell)
        assert "slurm_partition=gpu" in line and "gpu=1" in line, line
        assert f"runtime={want['runtime']}," in line and f"mem_mb={want['mem_mb']}," in line, (line, want)

    config["scaling"]["cell_overrides"] = {"s-D64-E1": {"lr_multipliers": [0.5, 4.0]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert _planned_cells(tmp_path) == ["s-D64-E1"]  # one cell's settings changed: only that cell
    config["scaling"]["data_sizes"] = [64, 96]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert _planned_cells(tmp_path) == ["s-D64-E1", "s-D96-E1", "xs-D96-E1"]  # + the new data size's cells


def test_pretrained_init_needs_the_pretrain_stage_or_a_checkpoint(tmp_path: Path) -> None:
    from jetfm.scaling.cell import run_cell

    config = validate_config({"scaling": {**TINY, "data_sizes": [32], "init": "pretrained"}})
    try:
        import jetfm.finetune.objective  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(NotImplementedError, match="needs the pretrain stage"):
            run_cell(config, "xs-D32-E1", "unused.h5", "unused.h5", tmp_path)
    else:
        with pytest.raises(ValueError, match=r"needs scaling\.pretrained_checkpoint"):
            run_cell(config, "xs-D32-E1", "unused.h5", "unused.h5", tmp_path)


def test_per_size_pretraining_gives_each_size_its_backbone_and_counts_its_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # results/scaling/<sweep>/pretrain/<size> under tmp_path
    files = make_dataset(tmp_path / "h5", n_train=128, n_val=64, n_test=64, shards=1)
    for offset, split in ((10**6, "val"), (2 * 10**6, "test")):  # pretraining refuses shared events
        with h5py.File(files[split][0], "r+") as f:
            f["event_id"][...] = f["event_id"][...] + offset
    config = validate_config({
        "preprocess": {"shards_per_split": 1},
        "pretrain": {"train": {"max_steps": 3, "warmup_steps": 1, "eval_every": 3, "batch_size": 16}},
        "scaling": {**TINY, "data_sizes": [32], "init": "pretrained", "pretrain": {"method": "mpm"}},
    })  # fmt: skip
    assert grid.pretrained_checkpoint(config, "xs").endswith("/pretrain/xs/checkpoint.pt")
    assert grid.cell_settings(config, "s-D32-E1")["pretrain"]["size"] == TINY["sizes"]["s"]
    run_sweep(config, tmp_path / "h5", tmp_path / "results/scaling/tiny", threads=1)
    for size in ("xs", "s"):
        backbone = torch.load(grid.pretrained_checkpoint(config, size), weights_only=True)
        assert (
            backbone["step"] == 3
            and backbone["config"]["size"]["embed_dim"] == TINY["sizes"][size]["embed_dim"]
        )
        result = json.loads((tmp_path / f"results/scaling/tiny/cells/{size}-D32-E1/result.json").read_text())
        assert result["init"] == "pretrained" and result["flops_pretrain"] > 0
        assert result["flops"] > result["flops_pretrain"]  # fine-tuning compute + the backbone's
    config["scaling"]["pretrained_checkpoint"] = "one.pt"
    with pytest.raises(ValueError, match="not both"):
        grid.cell_settings(config, "xs-D32-E1")


def test_compare_two_sweeps_measures_a_shift_in_units_of_its_uncertainty(tmp_path: Path) -> None:
    from jetfm.scaling.compare import compare_fits

    rows = [r for r in _synthetic_rows(np.random.default_rng(3)) if r["epochs"] == 1]
    shifted = [{**r, "val_loss": r["val_loss"] - 0.1} for r in rows]  # a lower asymptote, same slopes
    paths = {}
    for label, data in (("scratch", rows), ("pretrained", shifted)):
        fit = analyse(data, {"bootstrap": 40, "seed": 2})
        fit.pop("provenance", None)
        paths[label] = tmp_path / f"{label}.json"
        paths[label].write_text(json.dumps(fit))
    table = {(r["sweep"], r["quantity"]): r for r in compare_fits(paths, tmp_path / "cmp.csv")}
    assert table["pretrained", "E"]["pull_vs_first"] < -2  # E moved down by 0.1, many sigma
    assert abs(table["pretrained", "beta"]["pull_vs_first"]) < 3  # the data exponent did not
    assert np.isnan(table["scratch", "E"]["pull_vs_first"])
    assert len((tmp_path / "cmp.csv").read_text().splitlines()) == 1 + 2 * 6
