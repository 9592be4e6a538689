"""The preprocess rule family under real Snakemake: `script:` + a Dask LocalCluster + the report figure.

Runs in a temporary directory with a Snakefile that includes only common.smk and preprocess.smk, on ROOT
files written where the simulation stage would put them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from fixtures.preprocess import write_jetclass_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.mark.slow
def test_preprocess_all_under_snakemake(tmp_path: Path) -> None:
    classes = ["QCD", "Hbb", "Tbqq"]
    for i, cls in enumerate(classes):
        write_jetclass_file(tmp_path / f"results/sim/wf/{cls}/0000.root", cls, 60, i)
        write_jetclass_file(tmp_path / f"results/sim/wf/{cls}/0000.views.root", cls, 40, 10 + i, views=4)
    extra = write_jetclass_file(tmp_path / "external/HToCC_007.root", "Hcc", 30, 99, with_event_id=False)
    config = {
        "dataset": "wf",
        "classes": classes,
        "simulate": {"shards": 1},
        "resimulate": {"enabled": True, "shards": 1},
        "preprocess": {
            "max_particles": 32,
            "input_files": [str(extra)],
            "dask": {"cluster": "local", "workers": 2},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        f'include: "{REPO}/workflow/rules/common.smk"\n'
        f'include: "{REPO}/workflow/rules/preprocess.smk"\n'
    )
    proc = subprocess.run(
        [
            str(SNAKEMAKE),
            "-c2",
            "preprocess_all",
            "--directory",
            str(tmp_path),
            "-s",
            str(tmp_path / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = tmp_path / "logs/preprocess/wf/0000.log"  # the one group's job
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    summary = json.loads((tmp_path / "results/h5/wf/summary.json").read_text())
    assert summary["counts"]["jets_in"] == summary["counts"]["jets_out"] == 3 * 60 + 3 * 40 + 30
    assert summary["counts"]["files_in"] == 7
    n = 0
    for split in ("train", "val", "test"):
        with h5py.File(tmp_path / f"results/h5/wf/{split}/0000.h5", "r") as f:
            n += len(f["label"])
            assert f["part_features"].shape[1:] == (32, 17)
    assert n == 330
    assert (tmp_path / "results/plots/wf/preprocess_features.png").stat().st_size > 10_000
    assert "Dask local cluster up" in log.read_text()
