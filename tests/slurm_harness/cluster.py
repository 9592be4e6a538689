"""Python side of the Slurm test harness: start/stop the single-node cluster, submit a job and wait for it.

The shell scripts next to this file do the work (so CI and a person at a terminal run exactly the same
thing); this module adds what tests need: a free port range, a private state directory, the environment
(`SLURM_CONF`, `.venv/bin` first on PATH) and `submit()`, which returns what `sacct` recorded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIRED = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sacctmgr")
FINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE",
}  # fmt: skip


@dataclass(frozen=True)
class JobResult:
    """One finished Slurm job as `sacct` recorded it, plus its stdout/stderr file."""

    job_id: str
    state: str  # sacct State, e.g. COMPLETED, FAILED, CANCELLED
    exit_code: str  # sacct ExitCode "<exit>:<signal>"
    partition: str
    account: str
    alloc_tres: str
    output: str
    steps: list[dict[str, str]] = field(default_factory=list)  # sacct rows of the job steps


@dataclass(frozen=True)
class SlurmCluster:
    """A running single-node Slurm started by start.sh; `env` is what clients and jobs need."""

    home: Path
    conf: Path
    env: dict[str, str]
    setup_seconds: float
    start_log: str

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command (sinfo, sacct, scontrol...) against this cluster."""
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def sacct(self, job_ids: list[str] | None = None, *, allocations: bool = True) -> list[dict[str, str]]:
        """sacct rows (dicts keyed by field) for the given job ids, or all jobs since the cluster started."""
        fields = "JobID,JobName%60,Partition,Account,State,ExitCode,AllocTRES%80,NTasks,WorkDir%200"
        cmd = ["sacct", "-n", "-P", "--starttime=2000-01-01", "-o", fields]
        if allocations:
            cmd.append("-X")
        if job_ids:
            cmd += ["-j", ",".join(job_ids)]
        names = [f.split("%")[0] for f in fields.split(",")]
        rows = self.run(*cmd).stdout.splitlines()
        return [dict(zip(names, r.split("|"), strict=True)) for r in rows if r.strip()]

    def wait(self, job_id: str, timeout: float = 300) -> list[dict[str, str]]:
        """Poll sacct until the job's allocation row has a final state; returns its rows (steps too).

        slurmdbd can record a short job's end before its start record (which carries the partition), so
        this also waits for the partition to appear.
        """
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sacct([job_id], allocations=False)
            top = [r for r in rows if r["JobID"] == job_id]
            if top and top[0]["State"].split()[0] in FINAL_STATES and top[0]["Partition"]:
                return rows
            if time.monotonic() > deadline:
                self.run("scancel", job_id, check=False)
                state = top[0]["State"] if top else "not in sacct"
                raise TimeoutError(f"Slurm job {job_id} not finished after {timeout:.0f} s (state {state})")
            time.sleep(0.5)

    def submit(
        self,
        command: str,
        *,
        partition: str = "cpu",
        ntasks: int = 1,
        cpus_per_task: int = 1,
        mem_mb: int = 1000,
        gpus: int = 0,
        workdir: str | Path | None = None,
        output: str | Path | None = None,
        extra: tuple[str, ...] = (),
        timeout: float = 300,
    ) -> JobResult:
        """`sbatch --wrap command`, wait for it, return sacct's record and the job's output.

        The command runs under bash in `workdir` (default: the current directory) with this cluster's
        environment, so `.venv/bin` comes first on PATH. Use `srun` inside it for a multi-task step, e.g.
        `submit("srun python -m jetfm.train ...", ntasks=2)` for two DDP ranks.
        """
        workdir = Path(workdir or os.getcwd()).resolve()
        out = Path(output) if output else workdir / f"slurm-harness-{time.time_ns()}.out"
        cmd = [
            "sbatch", "--parsable", f"--partition={partition}", f"--ntasks={ntasks}",
            f"--cpus-per-task={cpus_per_task}", f"--mem={mem_mb}", f"--chdir={workdir}",
            f"--output={out}", "--export=ALL", *([f"--gpus={gpus}"] if gpus else []), *extra,
            "--wrap", command,
        ]  # fmt: skip
        job_id = self.run(*cmd).stdout.strip().split(";")[0]
        rows = self.wait(job_id, timeout)
        top = next(r for r in rows if r["JobID"] == job_id)
        return JobResult(
            job_id=job_id,
            state=top["State"].split()[0],
            exit_code=top["ExitCode"],
            partition=top["Partition"],
            account=top["Account"],
            alloc_tres=top["AllocTRES"],
            output=out.read_text() if out.exists() else "",
            steps=[r for r in rows if r["JobID"] != job_id],
        )


def unavailable_reason() -> str | None:
    """Why the harness cannot run here (None if it can, possibly after installing the packages)."""
    if sys.platform != "linux":
        return f"the Slurm test harness needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the Slurm test harness needs root (it starts munged, MariaDB and the Slurm daemons)"
    if all(shutil.which(x) for x in REQUIRED):
        return None
    if not shutil.which("apt-get"):
        missing = [x for x in REQUIRED if not shutil.which(x)]
        return f"Slurm is not installed ({', '.join(missing)} missing) and there is no apt-get to install it"
    proc = subprocess.run([str(HERE / "install.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return f"could not install Slurm with tests/slurm_harness/install.sh: {proc.stderr.strip()[-500:]}"
    return None


def _free_port_base(start: int = 16817, stop: int = 30000, width: int = 4) -> int:
    """A base port with `width` consecutive free ports (slurmctld, slurmd, slurmdbd, MariaDB)."""
    for base in range(start, stop, 10):
        try:
            for p in range(base, base + width):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {width} consecutive free ports between {start} and {stop}")


def cluster_env(home: Path) -> dict[str, str]:
    """The environment for Slurm clients and jobs: SLURM_CONF and this interpreter's bin dir first on PATH."""
    env = dict(os.environ)
    env["SLURM_CONF"] = str(home / "etc" / "slurm.conf")
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [venv_bin, *[p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin]]
    )
    return env


def start(home: Path, *, timeout: float = 300) -> SlurmCluster:
    """Run start.sh with a private state directory and free ports; raises with its log tail on failure."""
    env = dict(os.environ, JETFM_SLURM_HOME=str(home), JETFM_SLURM_PORT_BASE=str(_free_port_base()))
    t0 = time.perf_counter()
    proc = subprocess.run([str(HERE / "start.sh")], env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"tests/slurm_harness/start.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    m = re.search(r"up in ([0-9.]+) s", proc.stdout)
    return SlurmCluster(
        home=home,
        conf=home / "etc" / "slurm.conf",
        env=cluster_env(home),
        setup_seconds=float(m.group(1)) if m else elapsed,
        start_log=proc.stdout,
    )


def stop(cluster: SlurmCluster) -> None:
    """Run stop.sh: cancel leftover jobs, stop our daemons by pid file, remove the state directory."""
    env = dict(os.environ, JETFM_SLURM_HOME=str(cluster.home))
    subprocess.run([str(HERE / "stop.sh")], env=env, capture_output=True, text=True, timeout=120)
