"""profiles/slurm against a real single-node Slurm (tests/slurm_harness): sbatch, sacct, srun, dask-jobqueue.

The cluster is the session fixture `slurm_cluster` (tests/conftest.py). Workflows run in copies of the
repository's Snakefile, workflow/, config/, profiles/, scripts/ and envs/ under tmp_path, never in results/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
import yaml
from slurm_harness.cluster import SlurmCluster

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "profiles", "scripts", "envs")
# Poll sacct every few seconds instead of the profile's 20 s: the jobs here take seconds.
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "2")


def copy_workflow(dest: Path, config: dict[str, Any]) -> Path:
    """The workflow files into `dest` (symlinks resolved), with `config` as config/config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / part)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900):
    """Run snakemake in `workdir`; returns the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def jobs_by_rule(
    cluster: SlurmCluster, workdir: Path, timeout: float = 30
) -> dict[str, list[dict[str, str]]]:
    """sacct records of the jobs snakemake submitted from `workdir`, grouped by rule (from --comment).

    Waits (up to `timeout`) until slurmdbd has every job's partition: it may store a short job's start
    record, which carries it, after the end record.
    """
    fields = "JobID,Partition,State,ExitCode,WorkDir%300,Comment%300"
    names = [f.split("%")[0] for f in fields.split(",")]
    deadline = time.monotonic() + timeout
    while True:
        out = cluster.run("sacct", "-X", "-n", "-P", "--starttime=2000-01-01", "-o", fields).stdout
        by_rule: dict[str, list[dict[str, str]]] = {}
        for line in out.splitlines():
            row = dict(zip(names, line.split("|"), strict=True))
            if Path(row["WorkDir"]) != workdir or not row["Comment"].startswith("rule_"):
                continue
            rule = row["Comment"].removeprefix("rule_").split("_wildcards_")[0]
            by_rule.setdefault(rule, []).append(row)
        if all(r["Partition"] for rows in by_rule.values() for r in rows) or time.monotonic() > deadline:
            return by_rule
        time.sleep(0.5)


def assert_same_root(a: Path, b: Path) -> None:
    """Every branch of the `tree` TTree equal in two ROOT files (provenance TObjString not compared)."""
    with uproot.open(a) as fa, uproot.open(b) as fb:
        ta, tb = fa["tree"], fb["tree"]
        branches = ta.keys()
        assert sorted(branches) == sorted(tb.keys()), f"{a} vs {b}: different branches"
        assert ta.num_entries == tb.num_entries > 0, f"{a} vs {b}: {ta.num_entries} vs {tb.num_entries} jets"
        for name in branches:
            xa, xb = ta[name].array(library="ak"), tb[name].array(library="ak")
            assert ak.array_equal(xa, xb, equal_nan=True), f"branch {name} differs between {a} and {b}"


def assert_same_h5(a: Path, b: Path) -> int:
    """Every dataset and every attribute but provenance equal in two HDF5 shards; returns the jet count."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa.keys()) == sorted(fb.keys()), f"{a} vs {b}: different datasets"
        for name in fa:
            x, y = fa[name][()], fb[name][()]
            assert x.dtype == y.dtype and x.shape == y.shape, (
                f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
            )
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"dataset {name} differs: {a} vs {b}"
        for key in set(fa.attrs) | set(fb.attrs):
            if key != "provenance":
                assert np.array_equal(fa.attrs[key], fb.attrs[key]), f"attribute {key} differs: {a} vs {b}"
        return len(fa["label"])


# --------------------------------------------------------------------------------------------------------
# The profile itself (no cluster needed: dry runs)


def test_profile_puts_rule_families_on_their_partitions(tmp_path: Path) -> None:
    """Dry run: simulation/preprocessing on cpu, training on gpu with one GPU per rank (train.gpus ranks),
    env vars rename partitions."""
    copy_workflow(tmp_path, yaml.safe_load((REPO / "config/config.yaml").read_text()))

    def resources(env: dict[str, str], *args: str) -> dict[str, str]:
        proc = snakemake(
            tmp_path, "--profile", "profiles/slurm", "-n", "train_all", *args, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        found: dict[str, str] = {}
        rule = None
        for line in proc.stdout.splitlines():
            if line.startswith("rule ") and line.endswith(":"):
                rule = line[5:-1]
            elif line.strip().startswith("resources:") and rule:
                found.setdefault(rule, line.strip())
        return found

    env = {k: v for k, v in os.environ.items() if not k.startswith("JETFM_SLURM_")}
    res = resources(env)
    for rule in ("simulate", "preprocess"):
        assert "slurm_partition=cpu" in res[rule], res[rule]
    assert "slurm_partition=gpu" in res["train"] and "tasks=1" in res["train"], res["train"]
    assert "--gpus-per-task=1" in res["train"] and "mpi=" not in res["train"], res["train"]
    assert "slurm_account" not in res["simulate"]

    renamed = resources(
        env | {"JETFM_SLURM_PARTITION_CPU": "short", "JETFM_SLURM_PARTITION_GPU": "a100",
               "JETFM_SLURM_ACCOUNT": "cms_ml"},
        "--config", "set=train.gpus=4",
    )  # fmt: skip
    assert "slurm_partition=short" in renamed["simulate"] and "slurm_account=cms_ml" in renamed["simulate"]
    train = renamed["train"]
    assert "slurm_partition=a100" in train and "tasks=4" in train and "--ntasks-per-node=4" in train, train
    assert "--gpus-per-task=1" in train and "mpi=srun" in train, train  # 4 ranks started by srun in the job


# --------------------------------------------------------------------------------------------------------
# The harness


@pytest.mark.slurm
def test_harness_runs_jobs_side_by_side_with_accounting(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Partitions exist; two 1-CPU jobs overlap in time; srun starts 2 tasks; gpu jobs get a GRES."""
    parts = slurm_cluster.run("sinfo", "-h", "-o", "%R").stdout.split()
    assert sorted(parts) == ["cpu", "fpga", "gpu"]
    cmd = "date +%s.%N; sleep 3; date +%s.%N"
    out_a, out_b = tmp_path / "a.out", tmp_path / "b.out"
    ids = [
        slurm_cluster.run(
            "sbatch", "--parsable", "-c1", "--mem=500", f"--output={out}", "--wrap", cmd
        ).stdout.strip()
        for out in (out_a, out_b)
    ]
    for job_id in ids:
        slurm_cluster.wait(job_id, timeout=120)
    (a0, a1), (b0, b1) = ([float(x) for x in o.read_text().split()] for o in (out_a, out_b))
    assert max(a0, b0) < min(a1, b1), "two 1-CPU jobs did not run concurrently"

    ranks = slurm_cluster.submit(
        "srun bash -c 'echo \"rank $SLURM_PROCID/$SLURM_NTASKS $(command -v python)\"'",
        ntasks=2,
        workdir=tmp_path,
    )
    assert ranks.state == "COMPLETED", ranks
    lines = sorted(ranks.output.split("\n"))[-2:]
    assert [x.split()[0] for x in lines] == ["rank", "rank"]
    assert sorted(x.split()[1] for x in lines) == ["0/2", "1/2"]
    assert all(x.split()[2] == str(Path(sys.executable).parent / "python") for x in lines), lines

    gpu = slurm_cluster.submit("echo $SLURM_JOB_PARTITION", partition="gpu", gpus=1, workdir=tmp_path)
    assert gpu.state == "COMPLETED" and gpu.partition == "gpu" and "gres/gpu=1" in gpu.alloc_tres, gpu
    failed = slurm_cluster.submit("exit 3", partition="fpga", workdir=tmp_path)
    assert (failed.state, failed.exit_code, failed.partition) == ("FAILED", "3:0", "fpga")


# --------------------------------------------------------------------------------------------------------
# The pipeline through `snakemake --profile profiles/slurm`

TINY = {
    "dataset": "slurmtest",
    "seed": 4242,
    "classes": ["QCD", "Hbb"],
    "simulate": {"shards": 1, "jets_per_shard": 30},
    "resimulate": {"enabled": False},
    "preprocess": {"max_particles": 32, "dask": {"cluster": "local", "workers": 1}},
}


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_pipeline_under_slurm_equals_local(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """simulate -> preprocess via sbatch (in sacct, partition cpu) gives the local profile's outputs."""
    local = copy_workflow(tmp_path / "local", TINY)
    slurm = copy_workflow(tmp_path / "slurm", TINY)

    t0 = time.perf_counter()
    proc = snakemake(slurm, "--profile", "profiles/slurm", "preprocess_all", *FAST_POLL)
    t_slurm = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-5000:]
    t0 = time.perf_counter()
    proc_local = snakemake(local, "--profile", "profiles/default", "preprocess_all")
    t_local = time.perf_counter() - t0
    assert proc_local.returncode == 0, proc_local.stdout[-5000:]
    print(f"\ntiny pipeline: slurm profile {t_slurm:.1f} s, local profile {t_local:.1f} s")

    jobs = jobs_by_rule(slurm_cluster, slurm)
    assert {r: len(v) for r, v in jobs.items()} == {"simulate": 2, "preprocess": 1, "preprocess_plot": 1}, (
        jobs
    )
    for rule, rows in jobs.items():
        for row in rows:
            assert row["State"] == "COMPLETED" and row["Partition"] == "cpu", (rule, row)

    sim = sorted((local / "results/sim/slurmtest").glob("*/0000.root"))
    assert len(sim) == 2
    for f in sim:
        assert_same_root(f, slurm / f.relative_to(local))
    h5 = sorted((local / "results/h5/slurmtest").glob("*/0000.h5"))
    assert [f.parent.name for f in h5] == ["test", "train", "val"]
    n = sum(assert_same_h5(f, slurm / f.relative_to(local)) for f in h5)
    summary = json.loads((slurm / "results/h5/slurmtest/summary.json").read_text())
    assert n == summary["counts"]["jets_out"] == summary["counts"]["jets_in"] == 60


# --------------------------------------------------------------------------------------------------------
# A killed job: reported with its log, and a rerun redoes only what is missing

FAILING_SNAKEFILE = """
rule all:
    input:
        expand("out/{name}.txt", name=["a", "b", "c"]),


rule make:
    output:
        "out/{name}.txt",
    log:
        "logs/make/{name}.log",
    shell:
        # Job c is killed (SIGKILL, as the OOM killer would) until `allow-c` exists. Not `scancel`: with it
        # the executor plugin 2.8 hangs, as sacct says "CANCELLED by 0", a state it does not recognise.
        "if [ {wildcards.name} = c ] && [ ! -e allow-c ]; then kill -KILL $$; fi; "
        "echo {wildcards.name} $SLURM_JOB_ID $SLURM_JOB_PARTITION > {output} 2> {log}"
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_killed_job_is_reported_with_log_and_rerun_redoes_only_it(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "Snakefile").write_text(FAILING_SNAKEFILE)
    args = ("--profile", "profiles/slurm", "--retries", "0", *FAST_POLL)

    first = snakemake(tmp_path, *args, timeout=300)
    assert first.returncode != 0, first.stdout[-3000:]
    killed = [r for r in jobs_by_rule(slurm_cluster, tmp_path)["make"] if r["Comment"].endswith("_c")]
    assert len(killed) == 1 and killed[0]["State"] == "FAILED", killed
    job_id = killed[0]["JobID"]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in first.stdout, first.stdout[-3000:]
    slurm_log = next((tmp_path / "logs/slurm/rule_make").rglob(f"{job_id}.log"))
    assert str(slurm_log) in first.stdout, first.stdout[-3000:]
    assert "Error in rule make" in slurm_log.read_text()
    done = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.txt")}
    assert sorted(done) == ["a.txt", "b.txt"]

    (tmp_path / "allow-c").touch()
    second = snakemake(tmp_path, *args, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.txt") if p.name in done} == done
    rows = jobs_by_rule(slurm_cluster, tmp_path)["make"]
    assert len(rows) == 4, rows  # a, b, the cancelled c, and c again: nothing else was resubmitted
    c_text = (tmp_path / "out/c.txt").read_text().split()
    assert c_text[0] == "c" and c_text[1] != job_id and c_text[2] == "cpu"


# --------------------------------------------------------------------------------------------------------
# Preprocessing with dask-jobqueue SLURMCluster workers


@pytest.mark.slurm
@pytest.mark.slow
def test_preprocess_on_slurmcluster_equals_local_cluster(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jetfm.preprocess with workers as Slurm jobs (dask-jobqueue) writes the same HDF5 as a LocalCluster."""
    monkeypatch.chdir(tmp_path)  # the worker jobs write slurm-<jobid>.out into the submitting directory
    from fixtures.preprocess import write_jetclass_file

    from jetfm.preprocess import preprocess

    classes = ["QCD", "Hbb", "Tbqq"]
    inputs = [
        str(write_jetclass_file(tmp_path / f"in/{cls}/0000.root", cls, 40, i))
        for i, cls in enumerate(classes)
    ]
    base = {"dataset": "dj", "classes": classes, "preprocess": {"max_particles": 32, "chunksize": 20}}
    dask_local = {"cluster": "local", "workers": 2}
    dask_slurm = {
        "cluster": "slurm",
        "workers": 2,
        "queue": "cpu",
        "cores": 1,
        "memory": "1GB",
        "walltime": "00:10:00",
    }
    outs = {}
    for name, dask in (("local", dask_local), ("slurm", dask_slurm)):
        cfg = json.loads(json.dumps(base))
        cfg["preprocess"]["dask"] = dask
        summary = preprocess(cfg, inputs, str(tmp_path / name), progress=False)
        assert summary["counts"]["jets_in"] == summary["counts"]["jets_out"] == 120
        outs[name] = tmp_path / name

    fields = "JobID,JobName%40,Partition,State"
    # slurmdbd may record the cancelled worker jobs (and their partition) a little later.
    deadline = time.monotonic() + 30
    while True:
        out = slurm_cluster.run("sacct", "-X", "-n", "-P", "--starttime=2000-01-01", "-o", fields).stdout
        workers = [r.split("|") for r in out.splitlines() if r.split("|")[1] == "dask-worker"]
        if (len(workers) >= 2 and all(w[2] for w in workers)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(workers) >= 2 and all(w[2] == "cpu" for w in workers), out
    n = 0
    for split in ("train", "val", "test"):
        n += assert_same_h5(outs["local"] / f"{split}/0000.h5", outs["slurm"] / f"{split}/0000.h5")
    assert n == 120
