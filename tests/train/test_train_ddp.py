"""DDP: 2 CPU ranks (gloo, launched by torchrun) end with the same parameters as 1 process on the same
global batch; and the rank/world/master detection of torchrun and srun environments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.train import make_dataset

from jetfm.train.ddp import env_from_environ, first_host

B = 16  # per-rank batch = HDF5 chunk = read block: rank r's batch k is block perm[2k + r], the single
# process's batch k (2B) is blocks perm[2k], perm[2k+1]: the same jets, so the same averaged gradient.
# train.batch_size is the global batch (2B in both runs); each of the 2 ranks takes B.
TRAIN = {"max_steps": 8, "warmup_steps": 2, "eval_every": 8, "checkpoint_every": 8, "log_every": 1,
         "progress": False, "shuffle_buffer": 0, "block_size": B, "threads": 1}  # fmt: skip


def _run(cmd_prefix: list[str], tmp: Path, h5: Path, out: str, batch: int) -> dict[str, torch.Tensor]:
    config = tmp / f"{out}.yaml"
    size = {"preset": "tiny", "dropout": 0.0}
    config.write_text(
        yaml.safe_dump({"dataset": "fx", "train": {"sizes": {"part": size}, **TRAIN, "batch_size": batch}})
    )
    cmd = [*cmd_prefix, "-m", "jetfm", "train", "--config", str(config), "--model", "part",
           "--h5-dir", str(h5),
           "--out", str(tmp / out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(tmp / out / "checkpoint.pt", weights_only=True)


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    files = make_dataset(tmp_path / "h5", n_train=320, n_val=64, n_test=64, chunk=B)
    h5 = Path(files["train"][0]).parents[1]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29731",
    ]
    ddp = _run(torchrun, tmp_path, h5, "ddp", 2 * B)
    single = _run([sys.executable], tmp_path, h5, "single", 2 * B)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["jets"] == single["jets"] == 8 * 2 * B
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, atol=2e-5, rtol=1e-4, msg=f"parameter {k} differs")
    losses = [h["train_loss"] for h in ddp["history"]], [h["train_loss"] for h in single["history"]]
    assert [float(x) for x in losses[0]] == pytest.approx([float(x) for x in losses[1]], abs=1e-4)


def test_rank_detection_from_torchrun_and_slurm() -> None:
    tr = env_from_environ(
        {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    )
    assert (tr.rank, tr.world_size, tr.local_rank, tr.master_addr, tr.master_port) == (1, 4, 1, "n1", 1234)
    slurm = env_from_environ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
                              "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"})  # fmt: skip
    assert (slurm.rank, slurm.world_size, slurm.local_rank) == (3, 4, 1)
    assert slurm.master_addr == "gpu07" and slurm.master_port == 20000 + 4242
    assert not env_from_environ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).distributed  # a plain sbatch job
    assert first_host("cpu01,gpu[03-05]") == "cpu01"
    with pytest.raises(ValueError, match="outside world size"):
        env_from_environ({"RANK": "2", "WORLD_SIZE": "2"})
