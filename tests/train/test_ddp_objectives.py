"""DDP on CPU (gloo): W ranks optimise what one process optimises on the same global batch.

RS3L's contrastive loss gathers the other ranks' projections (with gradients) as negatives: 2 ranks give
the loss and the gradient of one process on the concatenated batch. Every objective of the one training loop,
run by torchrun on 2 ranks at `batch_size` 2B (B per rank) and by one process at the same global batch,
gives the same loss history, validation numbers and final metrics over 20 steps. The tokenizer and MPM
losses are means over the global batch's particles (`ddp.global_count`) and MPM's masks are seeded per jet
(`masking.jet_seeds`), so they too are the same with any number of ranks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import STEPS, B, rs3l_batch, rs3l_rank, uneven_rank
from fixtures.train import make_jets, make_views, write_shard

from jetfm.pretrain.contrastive import nt_xent

WORKER = Path(__file__).with_name("ddp_worker.py")
OBJECTIVES = ("supervised", "finetune", "distill", "rs3l", "tokenizer", "mpm")


@pytest.mark.parametrize("world", [2, 4])
def test_rs3l_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path, world: int) -> None:
    mp.spawn(rs3l_rank, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 4)
    x, event = rs3l_batch()
    loss = nt_xent(proj(x), event, 0.2)
    loss.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
        for g, p in zip(got["grads"], proj.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    # Local negatives only (the bug this guards against) give another loss: the test can fail.
    half = (
        nt_xent(proj(x[:12]), event[:12], 0.2).item() / 2 + nt_xent(proj(x[12:]), event[12:], 0.2).item() / 2
    )
    assert half != pytest.approx(loss.item(), rel=1e-3)


def test_ranks_with_unequal_batches_end_each_epoch_together(tmp_path: Path) -> None:
    """5 blocks of B jets on 2 ranks: rank 0 holds 3 batches per epoch, rank 1 two. Both end every epoch
    after 2, so after 5 steps both are at epoch 2, batch 1 (rank 0 alone would be at epoch 1, batch 2)."""
    rng = np.random.default_rng(0)
    files = {split: [str(write_shard(tmp_path / split / "0000.h5", make_jets(n, rng), chunk=B))]
             for split, n in (("train", 5 * B), ("val", 32))}  # fmt: skip
    mp.spawn(uneven_rank, args=(2, 29751, files, str(tmp_path / "run")), nprocs=2, join=True)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    positions = [(r["epoch"], r["batch_in_epoch"]) for r in ckpt["ranks"]]
    assert positions == [(2, 1), (2, 1)] and ckpt["jets"] == 5 * 2 * B


def _data(root: Path) -> dict[str, dict[str, list[str]]]:
    """Nominal jets (chunks of B rows) and, for RS3L, 4 views of each of 48 training events."""
    rng = np.random.default_rng(0)
    files: dict[str, list[str]] = {}
    for split, n in (("train", 12 * B), ("val", 48), ("test", 96)):
        files[split] = [str(write_shard(root / "jets" / split / "0000.h5", make_jets(n, rng), chunk=B))]
    views = {"val": files["val"], "test": files["test"]}
    arrays = make_views(make_jets(48, rng), 4, rng)
    arrays["event_id"] = np.repeat(np.arange(48, dtype=np.uint64), 4)
    views["train"] = [str(write_shard(root / "views" / "train" / "0000.h5", arrays, chunk=B))]
    return {"files": files, "views": views}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, then 2 torchrun ranks, each training every objective (the teacher of `distill` is a
    supervised ParT trained beforehand)."""
    root = tmp_path_factory.mktemp("ddp_objectives")
    data = _data(root)
    teacher = root / "teacher"
    for out, prefix in (("one", [sys.executable]),
                        ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                 "--master-port", "29741"])):  # fmt: skip
        spec = {**data, "teacher": str(teacher / "supervised" / "checkpoint.pt"), "out": str(root / out),
                "names": list(OBJECTIVES)}  # fmt: skip
        if out == "one":  # the teacher first (same objective, own directory)
            first = {**spec, "out": str(teacher), "names": ["supervised"]}
            (root / "teacher.json").write_text(json.dumps(first))
            _call([sys.executable, str(WORKER), "objectives", str(root / "teacher.json")])
        (root / f"{out}.json").write_text(json.dumps(spec))
        _call([*prefix, str(WORKER), "objectives", str(root / f"{out}.json")])
    return root


def _call(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _numbers(rows: list[dict[str, str]], skip: tuple[str, ...] = ("time_s",)) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items() if k not in skip and v not in ("", None)} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("name", OBJECTIVES)
def test_two_ranks_equal_one_process_at_the_same_global_batch(runs: Path, name: str) -> None:
    one = torch.load(runs / "one" / name / "checkpoint.pt", weights_only=True)
    two = torch.load(runs / "two" / name / "checkpoint.pt", weights_only=True)
    assert (one["world_size"], two["world_size"]) == (1, 2) and one["step"] == two["step"] == STEPS
    assert one["jets"] == two["jets"]
    h1, h2 = _numbers(one["history"]), _numbers(two["history"])
    assert len(h1) == len(h2) == STEPS
    for r1, r2 in zip(h1, h2, strict=True):
        assert r1.keys() == r2.keys()
        for k in r1:
            assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-5), f"{name} step {r1['step']}: {k}"
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=5e-5, rtol=1e-4, msg=f"{name}: parameter {k}")
    final = "metrics.json" if (runs / "one" / name / "metrics.json").exists() else "summary.json"
    m1 = json.loads((runs / "one" / name / final).read_text())
    m2 = json.loads((runs / "two" / name / final).read_text())
    assert (m2["world_size"], m2["global_batch"], m2["per_rank_batch"]) == (2, 2 * B, B)
    assert (m1["world_size"], m1["per_rank_batch"]) == (1, 2 * B)
    for k in ("accuracy", "macro_auc", "ece", "n", "val_loss", "val_positive_top1", "val_mse"):
        if k in m1:
            assert m2[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-5), f"{name}: {k}"
