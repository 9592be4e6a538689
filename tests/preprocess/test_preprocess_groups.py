"""The preprocessing fan-out (groups.py): file -> group mapping, per-group outputs, the summary over groups,
and the Snakemake rule family's job list when one input changes."""

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
import yaml
from fixtures.preprocess import write_jetclass_file

from jetfm.config import validate_config
from jetfm.preprocess.groups import assign_groups, group_of, merge_group_summaries, run_groups
from jetfm.preprocess.run import preprocess
from jetfm.preprocess.writer import DATASETS

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CLASSES = ("QCD", "Hbb", "Tbqq")


def make_config(**pre: object) -> dict:
    return validate_config({"preprocess": {"max_particles": 24, "dask": {"cluster": "none"}, **pre}})


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three classes x file indices 0..1, nominal 40 jets each, plus views files (4 views of 5 events)."""
    d = tmp_path_factory.mktemp("sim")
    files = []
    for c, cls in enumerate(CLASSES):
        for i in range(2):
            files.append(str(write_jetclass_file(d / cls / f"{i:04d}.root", cls, 40, 10 * c + i, shard=i)))
            files.append(
                str(
                    write_jetclass_file(
                        d / cls / f"{i:04d}.views.root", cls, 20, 100 + 10 * c + i, shard=i, views=4
                    )
                )
            )
    return files


def test_mapping_is_fixed_and_mixes_classes() -> None:
    assert group_of("results/sim/x/QCD/0042.root", 10) == group_of("/else/Hbb/0042.views.root", 10) == 2
    assert group_of("JetClass/train/HToBB_042.root", 10) == 2  # public file names map the same way
    assert group_of("no_number.root", 7) == group_of("/elsewhere/no_number.root", 7)  # basename hash
    files = [f"{cls}/{i:04d}.root" for cls in CLASSES for i in range(6)]
    groups = assign_groups(files, 3)
    assert sorted(groups) == [0, 1, 2]
    for members in groups.values():
        assert {m.split("/")[0] for m in members} == set(CLASSES), "every group holds every class"
    # adding files never moves existing ones (depends on basename and G only)
    more = assign_groups([*files, *(f"Wqq/{i:04d}.root" for i in range(6))], 3)
    assert all(set(groups[g]) <= set(more[g]) for g in groups)


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in DATASETS}


def test_group_output_identical_whatever_executor_or_chunking(sample: list[str], tmp_path: Path) -> None:
    files = assign_groups(sample, 2)[1]
    a = preprocess(make_config(chunksize=1000), files, str(tmp_path / "a"), progress=False, group=1)
    cfg_b = make_config(chunksize=17, compression="lzf", dask={"cluster": "local", "workers": 2})
    preprocess(cfg_b, files, str(tmp_path / "b"), progress=False, group=1)
    assert [s["shard"] for s in a["shards"]] == [1, 1, 1] and not (tmp_path / "a/train/0000.h5").exists()
    assert (tmp_path / "a/groups/0001.json").is_file() and not (tmp_path / "a/summary.json").exists()
    for split in ("train", "val", "test"):
        x, y = _read(tmp_path / "a" / split / "0001.h5"), _read(tmp_path / "b" / split / "0001.h5")
        for k in DATASETS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{split}/{k}")
    assert a["counts"]["jets_in"] == a["counts"]["jets_out"] == 3 * (40 + 20)


def test_fan_out_counts_and_views_never_straddle(sample: list[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    summary = run_groups(make_config(shards_per_split=2), sample, str(out), progress=False)
    c = summary["counts"]
    assert c["jets_in"] == c["jets_out"] == 6 * (40 + 20) and c["files_processed"] == 12
    assert sorted(summary["groups"]) == ["0000", "0001"]
    assert all(g["jets"] == 3 * 60 for g in summary["groups"].values())
    assert len(c["per_file"]) == 12 and sum(f["jets_out"] for f in c["per_file"].values()) == c["jets_out"]
    where: dict[int, set[tuple[str, int]]] = {}
    n = 0
    for s in summary["shards"]:
        path = out / s["split"] / f"{s['shard']:04d}.h5"
        with h5py.File(path, "r") as f:
            ev, view, label = f["event_id"][()], f["view"][()], f["label"][()]
            assert "per_file" not in json.loads(f.attrs["provenance"])["counts"], (
                "per-file counts: summary only"
            )
        n += len(ev)
        if len(ev) > 20:
            assert len(np.unique(label)) == 3, f"{path}: a group mixes classes"
        for e in ev[view >= 0].tolist():
            where.setdefault(e, set()).add((s["split"], s["shard"]))
    assert n == c["jets_out"] and len(where) == 6 * 5
    assert all(len(places) == 1 for places in where.values()), "views of one event in one split and shard"
    assert {s for places in where.values() for s, _ in places} == {"train", "val", "test"}
    # the summary refuses counts that do not add up
    bad = json.loads((out / "groups/0001.json").read_text())
    bad["counts"]["jets_out"] -= 1
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(RuntimeError, match="jets in"):
        merge_group_summaries([out / "groups/0000.json", tmp_path / "bad.json"])


def _dry_run_jobs(workdir: Path) -> list[str]:
    proc = subprocess.run(
        [str(SNAKEMAKE), "-n", "-c1", "preprocess_all", "--rerun-triggers", "mtime", "-s", "Snakefile"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    jobs = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    groups = re.findall(r"wildcards: group=(\d+)", text)
    return sorted(j + (f"[{groups.pop(0)}]" if j == "preprocess" else "") for j in jobs)


@pytest.mark.slow
def test_changing_one_input_reruns_only_its_group(tmp_path: Path) -> None:
    classes, n_files = ["QCD", "Hbb"], 4
    config = {
        "dataset": "g", "classes": classes, "simulate": {"shards": n_files},
        "resimulate": {"enabled": False}, "preprocess": {"shards_per_split": 3},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        f'include: "{REPO}/workflow/rules/common.smk"\n'
        f'include: "{REPO}/workflow/rules/preprocess.smk"\n'
    )
    inputs = [tmp_path / f"results/sim/g/{c}/{i:04d}.root" for c in classes for i in range(n_files)]
    outputs = [tmp_path / f"results/h5/g/{s}/{g:04d}.h5" for s in ("train", "val", "test") for g in range(3)]
    outputs += [tmp_path / f"results/h5/g/groups/{g:04d}.json" for g in range(3)]
    outputs += [tmp_path / "results/h5/g/summary.json", tmp_path / "results/plots/g/preprocess_features.png"]
    for i, path in enumerate(inputs + outputs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (1e9 + i, 1e9 + i))  # every output newer than every input
    assert _dry_run_jobs(tmp_path) == []
    os.utime(inputs[classes.index("Hbb") * n_files + 1], (2e9, 2e9))  # Hbb/0001.root -> group 1
    expected = ["preprocess[0001]", "preprocess_all", "preprocess_plot", "preprocess_summary"]
    assert _dry_run_jobs(tmp_path) == expected
    os.utime(inputs[3], (2e9, 2e9))  # QCD/0003.root: index 3 -> group 0 as well
    assert _dry_run_jobs(tmp_path) == ["preprocess[0000]", *expected]
