"""Leftovers of killed runs (issue 11, failure 6): a stage's next run removes the `.parts-*` / `.staging-*`
directories and `*.tmp` files of its outputs that no live process owns, and keeps those of live owners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.preprocess import write_jetclass_file

from jetfm.config import validate_config
from jetfm.preprocess.run import preprocess
from jetfm.simulate.run import simulate_shard
from jetfm.stale import owner_tag


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_preprocess_removes_parts_and_staging_of_killed_runs_only(tmp_path: Path) -> None:
    out = tmp_path / "h5"
    host = owner_tag().split("~")[0]
    dead = [out / ".parts-0123456789ab", out / f".staging-{host}~{_dead_pid()}-abc"]  # old and new style
    live = out / f".parts-{owner_tag()}-feedbeef"  # this (live) process
    for d in (*dead, live):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "part.h5").write_bytes(b"x" * 1000)
    stale_tmp = out / f".summary.json.{host}~{_dead_pid()}.xyz.json.tmp"
    stale_tmp.write_text("{")
    root = write_jetclass_file(tmp_path / "QCD_0000.root", "QCD", 60, 1, max_particles=20)
    config = validate_config({"preprocess": {"max_particles": 20, "dask": {"cluster": "none"}}})
    preprocess(config, [str(root)], str(out), progress=False)
    assert not any(d.exists() for d in dead) and not stale_tmp.exists()
    assert (live / "sub" / "part.h5").exists()
    assert (out / "summary.json").exists()


def test_simulate_removes_temporaries_of_its_output_left_by_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "QCD" / "0000.root"
    out.parent.mkdir()
    host = owner_tag().split("~")[0]
    stale = out.parent / f".0000.root.{host}~{_dead_pid()}.k2j3.root.tmp"
    untagged = out.parent / ".0000.root.k2j3x.root.tmp"  # written before owner tags existed
    live = out.parent / f".0000.root.{owner_tag()}.abcd.root.tmp"
    other_output = out.parent / f".0001.root.{host}~{_dead_pid()}.k2j3.root.tmp"  # not this job's output
    for f in (stale, untagged, live, other_output):
        f.write_bytes(b"partial")
    config = validate_config({"simulate": {"jets_per_shard": 2, "detector": "truth"}})
    simulate_shard(config, "QCD", 0, out, progress=False)
    assert out.exists() and not stale.exists() and not untagged.exists()
    assert live.exists() and other_output.exists()


@pytest.mark.parametrize("age_s, removed", [(10, False), (7200, True)])
def test_temporaries_of_another_host_count_as_stale_only_when_old(
    tmp_path: Path, age_s: float, removed: bool
) -> None:
    from jetfm.stale import remove_stale

    f = tmp_path / ".x.root.othernode~123.ab.root.tmp"
    f.write_text("x")
    os.utime(f, (f.stat().st_atime - age_s, f.stat().st_mtime - age_s))
    assert bool(remove_stale(tmp_path, (".x.root.*.tmp",))) is removed
