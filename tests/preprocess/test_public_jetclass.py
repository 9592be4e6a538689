"""The public JetClass files as an input (issue 26): globs and directories in `preprocess.input_files`,
expanded and checked at planning time; `simulate.enabled: false`; JetClass's own train/val/test files kept
as the splits (`preprocess.splits_from: files`), with counts per split equal to the files' entries.

Files are written in the public release's layout (tests/fixtures/preprocess.py `write_public_jetclass`:
`train_100M/HToBB_000.root`, `val_5M/...120.root`, `test_20M/...100.root`, no event_id, aux branches).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
import yaml
from fixtures.preprocess import write_public_jetclass

from jetfm import cli
from jetfm.config import validate_config
from jetfm.paths import InputPatternError, expand_input_files, preprocess_file_splits, preprocess_inputs
from jetfm.preprocess.inputs import derived_id_prefix

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CLASSES = ["QCD", "Hbb", "Tbqq"]


def _public_config(root: Path, **preprocess: object) -> dict:
    """A config on the public files only: no Pythia, the release's own splits, given as globs/directories."""
    return {
        "dataset": "pub",
        "classes": CLASSES,
        "simulate": {"enabled": False},
        "preprocess": {
            "max_particles": 32,
            "shards_per_split": 2,
            "splits_from": "files",
            "input_files": {
                "train": [f"{root}/train_100M/*.root"],
                "val": [f"{root}/val_5M"],  # a directory: its *.root files
                "test": [f"{root}/test_20M/*_1??.root"],
            },
            "dask": {"cluster": "none"},
            **preprocess,
        },
    }


def test_entries_are_files_directories_or_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_public_jetclass(tmp_path, ["QCD", "Hbb"], {"train": 2, "val": 1}, n_jets=5)
    train = sorted(str(p) for p in files["train"])
    assert expand_input_files([f"{tmp_path}/train_100M/*.root"]) == train
    assert expand_input_files([str(tmp_path / "train_100M")]) == train  # a directory: its *.root
    assert expand_input_files([f"{tmp_path}/**/HToBB_*.root"]) == sorted(
        str(p) for p in files["train"] + files["val"] if "HToBB" in p.name
    )  # ** crosses folders
    monkeypatch.setenv("JETCLASS_DIR", str(tmp_path))
    # $VARS expanded; a file matched by two entries counts once, in first-match order
    assert expand_input_files(["$JETCLASS_DIR/val_5M/*.root", f"{tmp_path}/val_5M/HToBB_120.root"]) == sorted(
        str(p) for p in files["val"]
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [("train_100M/*.rot", "matches no file"), ("empty", "is a directory without *.root files"),
     ("train_100M/HToBB_999.root", "does not exist")],
)  # fmt: skip
def test_an_entry_naming_no_file_is_one_line_naming_it(tmp_path: Path, entry: str, problem: str) -> None:
    write_public_jetclass(tmp_path, ["Hbb"], {"train": 1}, n_jets=5)
    (tmp_path / "empty").mkdir()
    config = validate_config(_public_config(tmp_path))
    config["preprocess"]["input_files"]["val"] = [f"{tmp_path}/{entry}"]
    with pytest.raises(InputPatternError) as err:
        preprocess_inputs(config)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"preprocess.input_files.val: '{tmp_path}/{entry}' {problem}")


def test_a_file_under_two_splits_is_refused(tmp_path: Path) -> None:
    write_public_jetclass(tmp_path, ["Hbb"], {"train": 1, "val": 1, "test": 1}, n_jets=5)
    config = validate_config(_public_config(tmp_path))
    config["preprocess"]["input_files"]["test"].append(str(tmp_path / "val_5M/HToBB_120.root"))
    with pytest.raises(ValueError, match=r"HToBB_120.root is listed under both val and test"):
        preprocess_inputs(config)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"simulate": {"enabled": True}}, "preprocess.splits_from is files but simulate.enabled is true"),
        ({"preprocess": {"input_files": ["x.root"]}}, "preprocess.input_files has no train files"),
        ({"preprocess": {"input_files": {"train": ["a"], "val": ["b"]}}}, "has no test files"),
        ({"preprocess": {"input_files": {"train": ["a"], "valid": ["b"]}}}, "'valid' was unexpected"),
    ],
)
def test_file_splits_need_per_split_files_and_no_simulation(patch: dict, needle: str) -> None:
    config = _public_config(Path("/data"))
    for section, values in patch.items():
        config[section].update(values)
    with pytest.raises(ValueError, match=re.escape(needle)):
        validate_config(config)


def test_without_simulation_only_the_given_files_are_read(tmp_path: Path) -> None:
    files = write_public_jetclass(tmp_path, ["Hbb"], {"train": 1, "val": 1, "test": 1}, n_jets=5)
    # config/config.yaml turns the views on; simulate.enabled: false turns them off with the nominal sample
    config = validate_config({**_public_config(tmp_path), "resimulate": {"enabled": True}})
    assert config["resimulate"]["enabled"] is False
    assert preprocess_inputs(config) == [str(files[s][0]) for s in ("train", "val", "test")]
    splits = preprocess_file_splits(config)
    assert {os.path.basename(f): s for f, s in splits.items()} == {
        "HToBB_000.root": "train", "HToBB_120.root": "val", "HToBB_100.root": "test",
    }  # fmt: skip


def test_public_files_keep_their_splits_with_exact_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jetfm preprocess` on globs over the public layout: every jet stays in its file's split, counts per
    split equal the entries of that split's files, nothing simulated is read."""
    files = write_public_jetclass(
        tmp_path / "JetClass", CLASSES, {"train": 2, "val": 1, "test": 2}, n_jets=40
    )
    cfg = tmp_path / "pub.yaml"
    cfg.write_text(yaml.safe_dump(_public_config(tmp_path / "JetClass")))
    out = tmp_path / "h5"
    code = cli.main(["preprocess", "--config", str(cfg), "--out-dir", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    entries = {
        split: {str(p): uproot.open(p)["tree"].num_entries for p in paths} for split, paths in files.items()
    }
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["per_split"] == {s: sum(e.values()) for s, e in entries.items()} == {
        "train": 240, "val": 120, "test": 240,
    }  # fmt: skip
    assert counts["files_in"] == 15 and counts["jets_in"] == counts["jets_out"] == 600
    split_of_prefix = {derived_id_prefix(f): s for s, e in entries.items() for f in e}
    by_name = {os.path.basename(f): n for e in entries.values() for f, n in e.items()}
    for f, c in counts["per_file"].items():  # each file's jets all in its own split
        split = split_of_prefix[derived_id_prefix(f)]
        assert c["per_split"][split] == c["jets_in"] == by_name[os.path.basename(f)], f
    seen = {s: 0 for s in entries}
    for shard in summary["shards"]:
        with h5py.File(shard["path"], "r") as h5:
            prefixes = np.unique(h5["event_id"][()] >> np.uint64(32)).tolist()
            seen[shard["split"]] += len(h5["label"])
        assert {split_of_prefix[p] for p in prefixes} <= {shard["split"]}, shard["path"]
    assert seen == counts["per_split"]
    # the release's numbering puts train, test and val files in their own groups of shards_per_split=2:
    # train 000/001 -> groups 0/1, test 100/101 -> 0/1, val 120 -> 0
    assert sorted(summary["groups"]) == ["0000", "0001"]


def test_cli_takes_quoted_globs_and_names_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_public_jetclass(tmp_path, ["Hbb"], {"train": 1}, n_jets=5)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": "x", "preprocess": {"dask": {"cluster": "none"}}}))
    bad = f"{tmp_path}/train_100M/*.rooot"
    code = cli.main(["preprocess", "--config", str(cfg), "--out-dir", str(tmp_path / "o"), bad])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == (
        f"jetfm preprocess: jetfm preprocess inputs: {bad!r} matches no file (expected a ROOT file, a "
        "directory holding *.root files, or a glob such as /data/JetClass/train_100M/*.root)"
    )
    code = cli.main(["preprocess", "--config", str(cfg), "--out-dir", str(tmp_path / "o"), "--no-progress",
                     f"{tmp_path}/train_100M/*.root"])  # fmt: skip
    assert code == 0 and "5 jets in, 5 out" in capsys.readouterr().out


def _snakefile(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        + "".join(f'include: "{REPO}/workflow/rules/{r}.smk"\n' for r in ("common", "simulate", "resimulate"))
        + f'include: "{REPO}/workflow/rules/preprocess.smk"\n'
        + "rule all:\n    default_target: True\n    input: ALL_TARGETS\n"
    )


def _dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [str(SNAKEMAKE), "-n", "-c1", "-s", "Snakefile", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_planning_without_simulation_reads_only_the_public_files(tmp_path: Path) -> None:
    write_public_jetclass(tmp_path / "JetClass", CLASSES, {"train": 2, "val": 1, "test": 1}, n_jets=5)
    _snakefile(tmp_path, _public_config(tmp_path / "JetClass"))
    proc = _dry_run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    jobs = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    assert sorted(set(jobs)) == ["all", "preprocess", "preprocess_plot", "preprocess_summary"], jobs
    inputs = re.findall(r"^\s+input: (.*)$", text, re.M)
    read = {f for line in inputs for f in line.split(", ") if f.endswith(".root")}
    assert (
        len(read) == 12 and all("/JetClass/" in f for f in read) and not any("results/sim" in f for f in read)
    )


def test_a_pattern_matching_nothing_fails_at_planning_naming_it(tmp_path: Path) -> None:
    write_public_jetclass(tmp_path / "JetClass", ["Hbb"], {"train": 1, "val": 1, "test": 1}, n_jets=5)
    config = _public_config(tmp_path / "JetClass")
    typo = f"{tmp_path}/JetClass/test_20M/*.rot"
    config["preprocess"]["input_files"]["test"] = [typo]
    _snakefile(tmp_path, config)
    proc = _dry_run(tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"\npreprocess.input_files.test: '{typo}' matches no file (expected" in text, text[-3000:]
    assert "Traceback" not in text


def test_snakemake_preprocesses_the_public_files_with_their_splits(tmp_path: Path) -> None:
    """The whole stage under Snakemake, globs relative to the working directory (each job expands them
    again to find its files' splits): counts per split are the files' entries, no simulation ran."""
    files = write_public_jetclass(
        tmp_path / "JetClass", CLASSES, {"train": 2, "val": 1, "test": 1}, n_jets=30
    )
    config = _public_config(Path("JetClass"))
    _snakefile(tmp_path, config)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [str(SNAKEMAKE), "-c1", "-s", "Snakefile", "preprocess_all"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    counts = json.loads((tmp_path / "results/h5/pub/summary.json").read_text())["counts"]
    expected = {s: sum(uproot.open(p)["tree"].num_entries for p in paths) for s, paths in files.items()}
    assert counts["per_split"] == expected == {"train": 180, "val": 90, "test": 90}
    assert counts["jets_in"] == counts["jets_out"] == 360
    assert (
        not (tmp_path / "results/sim").exists()
        and not (tmp_path / "results/plots/pub/sim_validation.png").exists()
    )


def test_the_preset_reads_jetclass_dir_with_its_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/jetclass-public.yaml on a small tree in the release's layout: every file once, in its folder's
    split, nothing simulated; without JETCLASS_DIR the first pattern is named with the variable."""
    from jetfm.config import load_config

    files = write_public_jetclass(tmp_path, ["QCD", "Tbl"], {"train": 2, "val": 1, "test": 1}, n_jets=5)
    config = load_config(REPO / "config/jetclass-public.yaml")
    assert config["dataset"] == "jetclass-public" and "rs3l" not in config["pretrain"]["methods"]
    monkeypatch.setenv("JETCLASS_DIR", str(tmp_path))
    assert sorted(preprocess_inputs(config)) == sorted(str(p) for paths in files.values() for p in paths)
    splits = preprocess_file_splits(config)
    assert {s: sorted(os.path.basename(f) for f, x in splits.items() if x == s) for s in files} == {
        "train": ["TTBarLep_000.root", "TTBarLep_001.root", "ZJetsToNuNu_000.root", "ZJetsToNuNu_001.root"],
        "val": ["TTBarLep_120.root", "ZJetsToNuNu_120.root"],
        "test": ["TTBarLep_100.root", "ZJetsToNuNu_100.root"],
    }
    monkeypatch.delenv("JETCLASS_DIR")
    with pytest.raises(InputPatternError) as err:
        preprocess_inputs(config)
    assert str(err.value).startswith(
        "preprocess.input_files.train: '$JETCLASS_DIR/train_100M/*.root' matches no file; "
        "is $JETCLASS_DIR set?"
    )


def test_an_input_outside_the_split_lists_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_public_jetclass(tmp_path / "JetClass", ["Hbb"], {"train": 1, "val": 1, "test": 1}, n_jets=5)
    stray = write_public_jetclass(tmp_path / "other", ["Hbb"], {"train": 1}, n_jets=5)["train"][0]
    cfg = tmp_path / "pub.yaml"
    cfg.write_text(yaml.safe_dump(_public_config(tmp_path / "JetClass")))
    out = tmp_path / "h5"
    code = cli.main(["preprocess", "--config", str(cfg), "--out-dir", str(out), str(stray)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == (
        f"jetfm preprocess: preprocess: {stray.resolve()} is under none of preprocess.input_files."
        "{train,val,test} (expected every input listed under one split with preprocess.splits_from: files)"
    )
    assert not out.exists() or not any(out.iterdir()), "nothing written"
