"""The whole DAG for real: every rule runs its own script on the `.test/` config, then the report builds.

tests/workflow/test_reliability_workflow.py replaces each script by a stub to check rerun triggers in seconds;
this test is the one where the scripts of every stage (simulate ... fpga, robustness, images) and
`snakemake --report` execute, in a temporary copy of the repository, as CI would run a user's laptop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What the workflow needs besides the package (imported from REPO/src through PYTHONPATH)
PARTS = ("Snakefile", "workflow", "profiles", "envs", "scripts", "config", ".test")
# Results of a local run of the .test config, not sources
LEFTOVERS = shutil.ignore_patterns("results", "logs", ".snakemake", "report.html", "__pycache__")
# Target rules only gather other rules' outputs: they have no job of their own to check.
TARGET_RULE = re.compile(r"all|\w+_all")


def _snakemake(repo: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [SNAKEMAKE, "--directory", ".test", *args],
        cwd=repo, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )  # fmt: skip


def _copy_repo(dest: Path) -> Path:
    for part in PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, symlinks=True, ignore=LEFTOVERS)
        else:
            shutil.copy(src, dest / part)
    return dest


@pytest.mark.slow
def test_every_rule_runs_its_script_and_the_report_builds(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path)
    rules = _snakemake(repo, "--list-rules")
    assert rules.returncode == 0, rules.stdout[-3000:]
    listed = {line for line in rules.stdout.splitlines() if re.fullmatch(r"\w+", line)}
    job_rules = {r for r in listed if not TARGET_RULE.fullmatch(r)}
    assert {"simulate", "train", "fpga_convert", "robustness_member", "images_transfer"} <= job_rules, listed

    # the default target (all), as a user runs it; profiles/default shows a failed job's log
    run = _snakemake(repo, "--cores", "2")
    assert run.returncode == 0, run.stdout[-6000:]
    ran = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", run.stdout))
    assert job_rules - ran == set(), f"rules that never ran: {sorted(job_rules - ran)}"

    # Finished outputs stay finished: no param, input or code change is seen on a second look.
    again = _snakemake(repo, "--cores", "1", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]

    report = _snakemake(repo, "--report", "report.html")
    assert report.returncode == 0, report.stdout[-3000:]
    html = repo / ".test/report.html"
    assert html.stat().st_size > 100_000, html.stat().st_size  # the figures are embedded
    # every stage's report category (workflow/rules/*.smk) is in the report's embedded JSON
    text = html.read_text(errors="replace")
    categories = ("Simulation", "Re-simulation", "Preprocessing", "Training", "Pretraining", "Scaling",
                  "Robustness", "Jet images", "FPGA", "Summary")  # fmt: skip
    assert [c for c in categories if f'"{c}"' not in text] == []
