"""One launcher for every rule that trains: N ranks of a training function, however the job was started.

`train.gpus` (ranks per node: one per GPU with CUDA, CPU processes with gloo otherwise) and `train.nodes`,
overridable per stage (`pretrain.train.gpus`, `finetune.train.nodes`, ...: `STAGE_SECTIONS`), give the layout.
`run(target, kwargs, config, stage)` then starts the ranks:

- one rank, or already inside a rank (RANK / SLURM_PROCID set by a launcher): call `target` in this process;
- inside a Slurm job (SLURM_JOB_ID): `srun` N tasks, one GPU each (`--gpus-per-task=1`), on the job's nodes.
  Training rules with N > 1 ranks get the `mpi` resource (`rule_resources`), so the jobstep executor runs
  the rule in the batch step instead of `srun -n1` (which would hold the allocation's CPUs and GPUs for one
  task); SLURM_JOB_ID survives its environment cleanup, so `srun` finds the allocation. In a step already
  (a profile without `mpi`), the ranks' step is started with `--overlap`;
- otherwise (a laptop, a workstation, `profiles/default`): `python -m torch.distributed.run --standalone`.

The call travels as JSON (`<out_dir>/.launch/call.json`, on the shared filesystem for multi-node jobs) to
`python -m jetfm.train.launch <call.json>` in every rank, which writes its outcome next to it. The loop makes
all ranks agree on a stop (train/signals.py) and rank 0 writes the checkpoint before any rank leaves, so one
rank stopped for a retry (exit 75) means the run can resume, whatever the launcher did to the other ranks
afterwards (`read_outcome`). SIGTERM/SIGUSR1 to the launcher are passed to the ranks
(torchrun and srun forward them), which checkpoint and stop: preemption reaches them either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jetfm import walltime
from jetfm.train.signals import RETRY_EXIT_CODE, STOP_SIGNALS, StopRequested

# Sections merged over `train:` for a stage's layout (and its TrainConfig): later ones win.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "train": (),
    "pretrain": ("pretrain.train",),
    "tokenizer": ("pretrain.train", "pretrain.tokenizer.train"),
    "finetune": ("finetune.train",),
    "scaling": ("scaling.train",),
    "images": ("images.transfer.train_overrides",),
    "fpga": ("fpga.train",),
}
LAUNCH_KEYS = ("gpus", "nodes")  # workflow keys of a training section that are not TrainConfig fields
CALL_DIR = ".launch"


@dataclasses.dataclass(frozen=True)
class Layout:
    """How many ranks a training job runs, where, and what each needs."""

    gpus: int = 1  # ranks per node (GPUs per node with CUDA)
    nodes: int = 1
    workers: int = 0  # DataLoader workers per rank
    cuda: bool = True  # ask Slurm for one GPU per rank (False: train.device cpu)

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes

    @property
    def cpus_per_rank(self) -> int:
        return self.workers + 1

    def slurm_resources(self, cpus_per_task: int = 0) -> dict[str, Any]:
        """Resources of a rule for snakemake-executor-plugin-slurm: `--nodes --ntasks --cpus-per-task` and,
        in slurm_extra, `--ntasks-per-node --gpus-per-task=1` (the plugin has no key for either), the stop
        signal of every training job (docs/architecture.md, Reliability), and `mpi` for N > 1 ranks."""
        extra = [f"--signal=TERM@{walltime.STOP_LEAD_SECONDS}"]
        if self.world_size > 1:
            extra.append(f"--ntasks-per-node={self.gpus}")
        if self.cuda:
            extra.append("--gpus-per-task=1")
        resources: dict[str, Any] = {
            "nodes": self.nodes,
            "tasks": self.world_size,
            "cpus_per_task": max(cpus_per_task, self.cpus_per_rank),
            "slurm_extra": " ".join(extra),  # inserted into the sbatch command line as it is
        }
        if self.world_size > 1:
            resources["mpi"] = "srun"  # the jobstep executor then leaves the `srun` to this launcher
        return resources


def section(config: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    node: Any = config
    for key in dotted.split("."):
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return dict(node) if isinstance(node, Mapping) else {}


def layout(config: Mapping[str, Any], stage: str) -> Layout:
    """The layout of `stage` from `train:` and the stage's own training sections."""
    if stage not in STAGE_SECTIONS:
        raise ValueError(f"unknown training stage {stage!r}; known: {sorted(STAGE_SECTIONS)}")
    values = section(config, "train")
    for dotted in STAGE_SECTIONS[stage]:
        values.update(section(config, dotted))
    gpus, nodes = int(values.get("gpus", 1)), int(values.get("nodes", 1))
    if gpus < 1 or nodes < 1:
        raise ValueError(f"{stage}: train.gpus and train.nodes must be >= 1, got {gpus} and {nodes}")
    return Layout(gpus, nodes, int(values.get("num_workers", 0)), values.get("device", "auto") != "cpu")


def rule_threads(config: Mapping[str, Any], stage: str, minimum: int = 1) -> int:
    """CPUs of a training job on one node: (loader workers + 1) per rank, at least `minimum` (the rule's
    single-process default; Snakemake caps it at --cores locally)."""
    spec = layout(config, stage)
    return max(minimum, spec.gpus * spec.cpus_per_rank)


def rule_resources(
    config: Mapping[str, Any], stage: str, minimum: int = 1, partition: str = "gpu"
) -> dict[str, Any]:
    """Slurm resources of a training rule (`Layout.slurm_resources`); CPUs per task from `rule_threads`; and
    `runtime`, the stage's expected minutes (`slurm.runtime_minutes`) capped at the partition's
    `slurm.max_runtime_minutes` (jetfm.walltime: a longer run continues in resumed jobs, `rule_retries`)."""
    spec = layout(config, stage)
    resources = spec.slurm_resources(rule_threads(config, stage, minimum) // spec.gpus)
    chain = walltime.stage_walltime(config, stage, partition)
    if chain is not None:
        resources["runtime"] = chain[0]
    return resources


def rule_retries(config: Mapping[str, Any], stage: str, base: int, partition: str = "gpu") -> int | None:
    """The `retries:` of a training rule: the resumed jobs its walltime chain needs plus `base` (retries after
    failures, slurm.chain_retries); None, Snakemake's own --retries, when the run fits in one job."""
    chain = walltime.stage_walltime(config, stage, partition)
    return walltime.retries(base, chain[1] if chain else 0)


def rank_threads(config: Mapping[str, Any], stage: str, job_threads: int) -> int:
    """torch threads of one rank: the job's CPUs on a node shared by its ranks (never oversubscribed)."""
    return max(1, job_threads // layout(config, stage).gpus)


def in_rank(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is already one rank of a launched job (torchrun or a multi-task srun)."""
    env = os.environ if environ is None else environ
    return "RANK" in env or (int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env)


def command(spec: Layout, call: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The command that starts `spec.world_size` ranks of `python -m jetfm.train.launch call`."""
    env = os.environ if environ is None else environ
    rank_cmd = [sys.executable, "-m", "jetfm.train.launch", str(call)]
    if env.get("SLURM_JOB_ID"):
        srun = env.get("JETFM_SRUN", "srun")
        cmd = [srun, f"--nodes={spec.nodes}", f"--ntasks={spec.world_size}",
               f"--ntasks-per-node={spec.gpus}", f"--cpus-per-task={spec.cpus_per_rank}",
               "--kill-on-bad-exit=1"]  # fmt: skip
        if spec.cuda:
            cmd.append("--gpus-per-task=1")
        if env.get("SLURM_STEP_ID"):  # started inside a step (no `mpi` resource): share its resources
            cmd.append("--overlap")
        return [*cmd, *rank_cmd]
    if spec.nodes > 1:
        raise ValueError(
            f"train.nodes = {spec.nodes} needs a Slurm job (--profile profiles/slurm); locally one node only"
        )
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={spec.gpus}",
            *rank_cmd[1:]]  # fmt: skip


def run(
    target: str, kwargs: dict[str, Any], config: Mapping[str, Any], stage: str, out_dir: str | Path
) -> Any:
    """Call `target` ("module:function") with `kwargs` (JSON-able) on the stage's ranks; the result of the
    function when it ran in this process, else None. Raises StopRequested when the ranks stopped for a
    retry, RuntimeError when a rank failed."""
    spec = layout(config, stage)
    if spec.world_size == 1 or in_rank():
        return resolve(target)(**kwargs)
    calls = Path(out_dir) / CALL_DIR
    shutil.rmtree(calls, ignore_errors=True)
    calls.mkdir(parents=True)
    call = calls / "call.json"
    call.write_text(json.dumps({"target": target, "kwargs": kwargs}))
    cmd = command(spec, call)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    code = wait_forwarding_signals(subprocess.Popen(cmd, env=env, stdout=sys.stdout, stderr=sys.stderr))
    outcome = read_outcome(calls)
    where = f"{spec.world_size} ranks on {spec.nodes} node(s) by `{shlex.join(cmd)}`"
    if outcome.get("exit") == 0:
        shutil.rmtree(calls, ignore_errors=True)
        print(f"launch: {where} finished", flush=True)
        return None
    if outcome.get("exit") == RETRY_EXIT_CODE:
        stop = outcome["stop"]
        raise StopRequested(stop["signal"], stop["step"], stop["checkpoint"])
    raise RuntimeError(
        f"{where} failed (exit {code}): {outcome.get('error', 'no rank wrote its outcome')}; the ranks' "
        "output is above in this log"
    )


def wait_forwarding_signals(proc: subprocess.Popen) -> int:
    """Wait for the rank launcher, passing SIGTERM/SIGUSR1 on to it (it forwards them to the ranks)."""

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    with handlers(forward):
        return proc.wait()


@contextlib.contextmanager
def handlers(handler: Any) -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def read_outcome(calls: Path) -> dict[str, Any]:
    """The job's outcome from the ranks' files: a failure if any rank failed, else a stop for a retry if any
    rank stopped, else success if any rank finished. One rank's word is enough for the last two: the loop
    stops all ranks at the same step and leaves only after the barrier that follows rank 0's checkpoint (or
    its final outputs), so ranks the launcher killed afterwards (srun --kill-on-bad-exit, torchrun) lose
    nothing; a failed rank is killed with the others instead of hanging them in a collective."""
    outcomes = []
    for path in sorted(calls.glob("rank*.json")):
        with contextlib.suppress(OSError, ValueError):
            outcomes.append({**json.loads(path.read_text()), "rank": path.stem[4:]})
    for code in (1, RETRY_EXIT_CODE, 0):
        found = [o for o in outcomes if o.get("exit") == code]
        if found:
            first = found[0]
            return {**first, "error": f"rank {first['rank']}: {first['error']}"} if code == 1 else first
    return {}


def resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def rank_main(call_path: str) -> int:
    """Body of every rank: run the call, write this rank's outcome (rank<r>.json) beside it, exit with it."""
    from jetfm.train.ddp import env_from_environ

    call = Path(call_path)
    rank = env_from_environ().rank
    spec = json.loads(call.read_text())
    outcome: dict[str, Any]
    try:
        resolve(spec["target"])(**spec["kwargs"])
        outcome = {"exit": 0}
    except StopRequested as stop:  # the launcher reports it (scripts: exit_for_retry)
        where = {"signal": stop.signal_name, "step": stop.step, "checkpoint": stop.checkpoint}
        outcome = {"exit": stop.exit_code, "stop": where}
    except Exception as exc:  # every failure must reach the launcher; the traceback goes to the log
        traceback.print_exc()
        outcome = {"exit": 1, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    (call.parent / f"rank{rank}.json").write_text(json.dumps(outcome))
    return int(outcome["exit"])


if __name__ == "__main__":
    raise SystemExit(rank_main(sys.argv[1]))
