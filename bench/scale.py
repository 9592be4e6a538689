"""Scale benchmark of the preprocessing fan-out: what grows with the number of input files N.

For N small synthetic ROOT files in the JetClass layout (10 classes, ~47 particles/jet) in G = N / 10
groups (10 files per group, one per class, as a 10^8-jet campaign has):

1. DAG: `snakemake -n preprocess_all` (common.smk + preprocess.smk) on a generated config: time, peak memory.
2. Group jobs: k of the G group jobs, each as its own process as Snakemake runs it (interpreter start,
   imports, a LocalCluster with the preset's workers, checks, processing, merge, shutdown): wall time, driver
   peak memory (the job's process), worker peak memory (its largest child process), worker memory over
   the job (first vs second half); then the summary over all G groups (from real group summaries copied
   under the other groups' names): time and peak memory.
3. Overhead over the bare work: the same files read with `uproot.iterate` and padded with numpy
   (bench/preprocess.py's baseline), against the stage's job time, as ratios. Small files are all fixed
   cost, so one larger group (10 files x --big-jets) separates the per-job fixed cost from the per-jet cost.
4. Projection to the campaign of config/jetclass-scale.yaml (1.25 x 10^8 jets, 1250 groups of 10^5), and
   the dry run of that preset with the whole Snakefile (goal <= 3 min, <= 1 GB).

Usage: .venv/bin/python bench/scale.py [--files 10,100,1000] [--jets 100] [--big-jets 5000] [--workdir DIR]
Defaults run in ~5-10 minutes on 2 shared cores. Set OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from fixtures.preprocess import write_jetclass_file  # noqa: E402
from preprocess import baseline  # noqa: E402  (bench/preprocess.py: bare uproot.iterate + numpy padding)

from jetfm import CLASSES  # noqa: E402
from jetfm.paths import group_summary_path  # noqa: E402
from jetfm.preprocess.groups import assign_groups  # noqa: E402

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PRESET = REPO / "config/jetclass-scale.yaml"


def campaign() -> dict:
    """Jets, groups and Dask workers per group job of the preset the projection is for."""
    c = yaml.safe_load(PRESET.read_text())
    sim, resim, pre = c["simulate"], c["resimulate"], c["preprocess"]
    jets = len(c["classes"]) * sim["shards"] * sim["jets_per_shard"]
    if resim["enabled"]:
        jets += len(c["classes"]) * resim["shards"] * resim["events_per_shard"] * resim["views"]
    return {"jets": jets, "groups": pre["shards_per_split"], "workers": pre["dask"]["workers"]}


GROUP_JOB = """
import json, sys, time
from jetfm.preprocess.run import preprocess
if __name__ == "__main__":
    config, files, out, group = json.loads(open(sys.argv[1]).read())
    s = preprocess(config, files, out, progress=False, group=group)
    print(json.dumps({"timing": s["timing"], "jets": s["counts"]["jets_out"]}))
"""
SUMMARY_JOB = """
import sys
from jetfm.preprocess.groups import write_summary
if __name__ == "__main__":
    write_summary(sys.argv[1], sys.argv[2:])
"""


def measured(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run cmd; sample RSS of it (the driver) and of its largest descendant (a worker) every 20 ms; CPU time
    of the whole process tree (the cores are shared, so CPU seconds, not wall time, measure the work)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, float, float]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                driver = ps.memory_info().rss
                kids = [c.memory_info().rss for c in ps.children(recursive=True)]
                samples.append((time.perf_counter() - t0, driver / 2**20, max(kids, default=0) / 2**20))
            except psutil.Error:
                pass
            done.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = [w for _, _, w in samples if w > 0]
    half = len(worker) // 2
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "driver_mb": max((d for _, d, _ in samples), default=0.0),
        "worker_mb": max(worker, default=0.0),
        "worker_first_half_mb": max(worker[:half], default=0.0),
        "worker_second_half_mb": max(worker[half:], default=0.0),
        "stdout": out,
    }


def make_inputs(root: Path, n_files: int, jets: int) -> list[str]:
    """n_files / 10 shards of every class at results/sim/bench/{cls}/{i:04d}.root (cached across runs)."""
    files = []
    for i in range(n_files // len(CLASSES)):
        for c, cls in enumerate(CLASSES):
            path = root / f"results/sim/bench/{cls}/{i:04d}.root"
            if not path.exists():
                write_jetclass_file(path, cls, jets, 7919 * i + c, shard=i, max_particles=90)
            files.append(str(path))
    return files


def dry_run(workdir: Path, n_files: int, groups: int, jets: int) -> dict:
    """`snakemake -n preprocess_all` over the preprocess rule family on a generated config."""
    config = {
        "dataset": "bench",
        "classes": list(CLASSES),
        "simulate": {"shards": n_files // len(CLASSES), "jets_per_shard": jets},
        "resimulate": {"enabled": False},
        "preprocess": {"shards_per_split": groups},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        f'include: "{REPO}/workflow/rules/common.smk"\n'
        f'include: "{REPO}/workflow/rules/preprocess.smk"\n'
    )
    r = measured([str(SNAKEMAKE), "-n", "-q", "rules", "-c1", "preprocess_all"], cwd=workdir)
    return {"dag_s": r["wall_s"], "dag_cpu_s": r["cpu_s"], "dag_mb": r["driver_mb"] + r["worker_mb"]}


def group_jobs(
    work: Path, files: list[str], groups: int, n_run: int, jets_per_file: int, workers: int
) -> dict:
    """Run n_run group jobs (a `workers`-worker LocalCluster each), then the summary over all `groups`."""
    out = work / "h5"
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "preprocess": {
            "shards_per_split": groups,
            "chunksize": max(jets_per_file, 1000),
            "dask": {"cluster": "local", "workers": workers},
        },
    }
    by_group = assign_groups(files, groups)
    script = work / "group_job.py"
    script.write_text(GROUP_JOB)
    runs, bare_s, jets = [], 0.0, 0
    for g in list(by_group)[:n_run]:
        args = work / f"group_{g}.json"
        args.write_text(json.dumps([config, by_group[g], str(out), g]))
        r = measured([sys.executable, str(script), str(args)])
        r.update(json.loads(r.pop("stdout").strip().splitlines()[-1]))
        runs.append(r)
        n = r["jets"]
        t = time.process_time()
        baseline(by_group[g], max(jets_per_file, 1000))
        bare_s += time.process_time() - t
        jets += n
    # the summary over all groups: the run groups' summaries copied under the names of the others
    real = [json.loads(group_summary_path(out, g).read_text()) for g in list(by_group)[:n_run]]
    paths = []
    for i, g in enumerate(by_group):
        s = json.loads(json.dumps(real[i % len(real)]))
        if i >= n_run:
            s["group"] = g
            s["counts"]["per_file"] = {
                f: s["counts"]["per_file"][k]
                for f, k in zip(by_group[g], sorted(s["counts"]["per_file"]), strict=True)
            }
            s["shards"] = [dict(sh, shard=g) for sh in s["shards"]]
        p = work / "summaries" / f"{g:04d}.json"
        p.parent.mkdir(exist_ok=True)
        p.write_text(json.dumps(s))
        paths.append(str(p))
    (work / "summary_job.py").write_text(SUMMARY_JOB)
    summary = measured([sys.executable, str(work / "summary_job.py"), str(work / "summaries"), *paths])
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("wall_s", "cpu_s")}
    return {
        "group_s": mean["cpu_s"],
        "group_wall_s": mean["wall_s"],
        "driver_mb": max(r["driver_mb"] for r in runs),
        "worker_mb": max(r["worker_mb"] for r in runs),
        "worker_halves": (
            max(r["worker_first_half_mb"] for r in runs),
            max(r["worker_second_half_mb"] for r in runs),
        ),
        "jets_per_group": jets / len(runs),
        "bare_s_per_group": bare_s / len(runs),
        "summary_s": summary["cpu_s"],
        "summary_mb": summary["driver_mb"],
        "timing": runs[-1]["timing"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="10,100,1000", help="comma-separated N (multiples of 10)")
    ap.add_argument("--jets", type=int, default=100, help="jets per small file")
    ap.add_argument("--big-jets", type=int, default=5000, help="jets per file of the one larger group")
    ap.add_argument("--run-groups", type=int, default=2, help="group jobs run per N (the rest extrapolated)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-preset", action="store_true", help="no dry run of config/jetclass-scale.yaml")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="jetfm-bench-scale-"))
    sizes = [int(n) for n in args.files.split(",")]
    plan = campaign()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; workdir {work}")
    t = time.perf_counter()
    files = make_inputs(work / "small", max(sizes), args.jets)
    print(f"inputs: {len(files)} files x {args.jets} jets written/cached in {time.perf_counter() - t:.0f} s")

    rows = []
    for n in sizes:
        g = n // len(CLASSES)
        d = work / f"n{n}"
        d.mkdir(exist_ok=True)
        (d / "results").mkdir(exist_ok=True)
        link = d / "results/sim"
        if not link.exists():
            link.symlink_to(work / "small/results/sim")
        row = {"N": n, "G": g, **dry_run(d, n, g, args.jets)}
        row.update(group_jobs(d, files[:n], g, min(args.run_groups, g), args.jets, plan["workers"]))
        rows.append(row)
        print(f"  N={n} done ({time.perf_counter() - t:.0f} s)", flush=True)

    big = work / "big"
    big_files = make_inputs(big, len(CLASSES), args.big_jets)
    big_row = group_jobs(big, big_files, 1, 1, args.big_jets, plan["workers"])

    print(
        f"\nper N (G = N/10 groups of 10 files; a group job = {plan['workers']}-worker LocalCluster as in the"
        " "
        "preset; s = CPU seconds of the"
    )
    print("process tree, wall in brackets; the cores are shared, so wall time swings with the load):")
    print(
        f"{'N':>5} {'G':>4} {'dag s':>13} {'dag MB':>7} {'job s':>13} {'driver MB':>9} {'worker MB':>9} "
        f"{'sum s':>6} {'sum MB':>6} {'stage/bare':>10} {'driver/N=10':>11}"
    )
    d10 = rows[0]["driver_mb"]
    for r in rows:
        print(
            f"{r['N']:>5} {r['G']:>4} {r['dag_cpu_s']:>5.1f} ({r['dag_s']:>5.1f}) {r['dag_mb']:>7.0f} "
            f"{r['group_s']:>5.1f} ({r['group_wall_s']:>5.1f}) {r['driver_mb']:>9.0f} {r['worker_mb']:>9.0f} "
            f"{r['summary_s']:>6.2f} {r['summary_mb']:>6.0f} {r['group_s'] / r['bare_s_per_group']:>10.1f} "
            f"{r['driver_mb'] / d10:>11.2f}"
        )
    small = rows[-1]
    per_jet = (big_row["group_s"] - small["group_s"]) / (big_row["jets_per_group"] - small["jets_per_group"])
    fixed_s = small["group_s"] - small["jets_per_group"] * per_jet
    bare_per_jet = big_row["bare_s_per_group"] / big_row["jets_per_group"]
    print(
        f"\nlarger group, 10 files x {args.big_jets} jets: job {big_row['group_s']:.1f} s CPU "
        f"({big_row['group_wall_s']:.1f} s wall; timing {big_row['timing']}), bare read+pad "
        f"{big_row['bare_s_per_group']:.1f} s CPU; driver {big_row['driver_mb']:.0f} MB, worker "
        f"{big_row['worker_mb']:.0f} MB (peak in the first/second half of the job "
        f"{big_row['worker_halves'][0]:.0f}/{big_row['worker_halves'][1]:.0f} MB)"
    )
    print(
        f"fit: job = {fixed_s:.1f} s fixed + {per_jet * 1e6:.0f} us/jet; bare read+pad "
        f"{bare_per_jet * 1e6:.0f} us/jet (stage per-jet work = {per_jet / bare_per_jet:.2f} x bare)"
    )

    jets, groups = plan["jets"], plan["groups"]
    work_h = jets * per_jet / 3600
    fixed_h = groups * fixed_s / 3600
    sum_slope = (rows[-1]["summary_s"] - rows[0]["summary_s"]) / max(rows[-1]["G"] - rows[0]["G"], 1)
    print(
        f"\nprojection to {jets:.3g} jets in {groups} groups of {jets // groups} jets "
        f"({plan['workers']} workers each, {PRESET.name}):"
    )
    print(
        f"  per-jet work {work_h:.0f} worker-h (bare read+pad {jets * bare_per_jet / 3600:.0f} h); "
        f"per-job fixed cost {fixed_h:.1f} worker-h = {100 * fixed_h / work_h:.1f} % of the work "
        "(goal <= 10 %)"
    )
    print(
        f"  one group job: {fixed_s + jets // groups * per_jet:.0f} s of worker CPU; "
        f"the summary over {groups} groups: "
        f"~{rows[0]['summary_s'] + sum_slope * (groups - rows[0]['G']):.1f} s; driver memory "
        f"{rows[-1]['driver_mb'] / d10:.2f}x from N={rows[0]['N']} to N={rows[-1]['N']}"
    )
    if not args.skip_preset:
        r = measured(
            [str(SNAKEMAKE), "-n", "-q", "rules", "-c1", "--configfile", "config/jetclass-scale.yaml"],
            cwd=REPO,
        )
        print(
            f"dry run of config/jetclass-scale.yaml (whole Snakefile, default profile): "
            f"{r['cpu_s']:.0f} s CPU ({r['wall_s']:.0f} s wall), {r['driver_mb'] + r['worker_mb']:.0f} MB "
            "(goal <= 180 s, <= 1024 MB)"
        )


if __name__ == "__main__":
    main()
