"""A 2-rank DDP training launched by `srun` on the real single-node Slurm (tests/slurm_harness): ranks come
from SLURM_PROCID / SLURM_NTASKS, the rendezvous from SLURM_JOB_NODELIST and the job id; the result equals
one process on the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.train import make_dataset
from slurm_harness.cluster import SlurmCluster

B = 16  # per-rank batch = HDF5 chunk = read block (see tests/train/test_train_ddp.py for why)


def _config(path: Path, batch: int) -> Path:
    train = {"max_steps": 6, "warmup_steps": 2, "eval_every": 6, "checkpoint_every": 6, "log_every": 1,
             "progress": False, "shuffle_buffer": 0, "block_size": B, "threads": 1, "batch_size": batch,
             "sizes": {"part": {"preset": "tiny", "dropout": 0.0}}}  # fmt: skip
    path.write_text(yaml.safe_dump({"dataset": "fx", "train": train}))
    return path


@pytest.mark.slurm
@pytest.mark.slow
def test_srun_two_rank_ddp_matches_one_process(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    files = make_dataset(tmp_path / "h5", n_train=256, n_val=64, n_test=64, chunk=B)
    h5 = Path(files["train"][0]).parents[1]
    args = f"--model part --h5-dir {h5}"
    ddp_cfg = _config(tmp_path / "ddp.yaml", 2 * B)  # the global batch: B per rank
    job = slurm_cluster.submit(
        f"srun python -m jetfm train --config {ddp_cfg} {args} --out {tmp_path / 'ddp'}",
        ntasks=2, cpus_per_task=1, mem_mb=3000, workdir=tmp_path, timeout=600,
    )  # fmt: skip
    assert job.state == "COMPLETED", job.output[-3000:]
    one_cfg = _config(tmp_path / "one.yaml", 2 * B)
    single_cmd = [sys.executable, "-m", "jetfm", "train", "--config", str(one_cfg), *args.split(),
                  "--out", str(tmp_path / "one")]  # fmt: skip
    subprocess.run(single_cmd, check=True, capture_output=True, timeout=300)
    ddp = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert ddp["world_size"] == 2 and len(ddp["ranks"]) == 2
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, atol=2e-5, rtol=1e-4, msg=f"parameter {k} differs")
