"""Overriding nested config keys from the command line (issue 26 item 5).

Snakemake's `--config` refuses dotted keys in its own parser and reads nested values as text, so the
workflow's validation (`jetfm.config.validate_config`, called by common.smk) accepts
`--config set=KEY=VALUE` (or a list of them), dotted keys inside mappings, and numbers/booleans given as
text. Unit tests on the validation, then real `snakemake -n` runs on a small workflow (common, simulate,
resimulate, preprocess) that count the planned jobs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jetfm.config import validate_config

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CLASSES = ["QCD", "Hbb"]


def test_text_becomes_the_number_or_boolean_the_schema_wants() -> None:
    # what `--config simulate='{jets_per_shard: 5}'` hands over: YAML's BaseLoader keeps every scalar text
    config = validate_config(
        {
            "simulate": {"jets_per_shard": "5", "sqrt_s_gev": "13000", "max_events_per_jet": "2.5"},
            "resimulate": {"enabled": "false"},
            "preprocess": {"dask": {"account": "null", "queue": "123"}, "input_files": "/data/x/*.root"},
        }
    )
    sim = config["simulate"]
    assert (sim["jets_per_shard"], sim["sqrt_s_gev"], sim["max_events_per_jet"]) == (5, 13000, 2.5)
    assert config["resimulate"]["enabled"] is False
    dask = config["preprocess"]["dask"]
    assert dask["account"] is None and dask["queue"] == "123"  # a string stays a string where one is wanted
    assert config["preprocess"]["input_files"] == ["/data/x/*.root"]  # one entry for a list of strings
    # free-form sections (TrainConfig fields): the text means what it would in a YAML file
    free = validate_config({"pretrain": {"train": {"max_steps": "100", "lr": "1e-3", "precision": "bf16"}}})
    assert free["pretrain"]["train"] == {"max_steps": 100, "lr": 0.001, "precision": "bf16"}
    # text that is no number keeps its text, so the error shows what was given
    with pytest.raises(ValueError, match=r"simulate.jets_per_shard: '5x' is not of type 'integer'"):
        validate_config({"simulate": {"jets_per_shard": "5x"}})
    with pytest.raises(ValueError, match=r"simulate.jets_per_shard: 'true' is not of type 'integer'"):
        validate_config({"simulate": {"jets_per_shard": "true"}})


def test_set_overrides_and_dotted_keys_reach_the_nested_config() -> None:
    base = {"simulate": {"shards": 1, "jets_per_shard": 10}, "preprocess": {"dask": {"workers": 2}}}
    one = validate_config({**base, "set": "simulate.jets_per_shard=50"})
    assert one["simulate"] == validate_config(base)["simulate"] | {"jets_per_shard": 50}
    many = validate_config({**base, "set": ["simulate.shards=3", "preprocess.dask.workers=4", "seed=7"]})
    assert (many["simulate"]["shards"], many["preprocess"]["dask"]["workers"], many["seed"]) == (3, 4, 7)
    assert "set" not in many
    dotted = validate_config({**base, "simulate.jets_per_shard": 70, "preprocess": {"dask.workers": "3"}})
    assert dotted["simulate"]["jets_per_shard"] == 70 and dotted["simulate"]["shards"] == 1
    assert dotted["preprocess"]["dask"]["workers"] == 3
    # idempotent: Snakemake keeps `set` in its config after validation and every job validates again
    assert validate_config({**one, "set": "simulate.jets_per_shard=50"}) == one


@pytest.mark.parametrize(
    ("given", "line"),
    [
        ("simulate.jets_per_shard=abc",
         "invalid config: --config set=simulate.jets_per_shard=abc: simulate.jets_per_shard: 'abc' is not of "
         "type 'integer'"),
        ("simulate.jets_per_shard", "--config set=simulate.jets_per_shard: expected KEY=VALUE, e.g. --config "
         "set=simulate.jets_per_shard=50"),
        ("seed.x=1", "--config set=seed.x=1: seed is 12345, not a section; cannot set seed.x"),
        ("simulate.jets_per_shrad=5", "invalid config: --config set=simulate.jets_per_shrad=5: simulate: "
         "Additional properties are not allowed ('jets_per_shrad' was unexpected)"),
    ],
)  # fmt: skip
def test_a_bad_set_is_one_line_blaming_it(given: str, line: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_config({"seed": 12345, "set": given}, source="the workflow config")
    assert str(err.value) == line


def _workflow(workdir: Path) -> None:
    config = {
        "dataset": "ov", "classes": CLASSES, "simulate": {"shards": 1, "jets_per_shard": 10},
        "resimulate": {"enabled": True, "shards": 1}, "preprocess": {"dask": {"cluster": "none"}},
    }  # fmt: skip
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "other.yaml").write_text(yaml.safe_dump({"simulate": {"shards": 4}}))
    (workdir / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        + "".join(
            f'include: "{REPO}/workflow/rules/{r}.smk"\n'
            for r in ("common", "simulate", "resimulate", "preprocess")
        )
    )


def _jobs(workdir: Path, *args: str) -> tuple[int, dict[str, int], str]:
    """(return code, {rule: planned jobs}, output) of `snakemake -n ARGS`."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [str(SNAKEMAKE), "-n", "-c1", "-s", "Snakefile", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    return proc.returncode, {k: int(v) for k, v in stats.items() if k != "total"}, text


def test_snakemake_config_overrides_reach_the_workflow(tmp_path: Path) -> None:
    _workflow(tmp_path)
    rc, jobs, text = _jobs(tmp_path, "simulate_all", "--config", "simulate={shards: 3, jets_per_shard: 5}")
    assert rc == 0 and jobs["simulate"] == 3 * len(CLASSES), text[-2000:]
    rc, jobs, text = _jobs(
        tmp_path, "preprocess_all", "--config", "set=[simulate.shards=2, resimulate.enabled=false]"
    )
    assert rc == 0 and jobs["simulate"] == 2 * len(CLASSES) and "resimulate" not in jobs, text[-2000:]
    rc, _, text = _jobs(tmp_path, "preprocess_all", "--config", "set=simulate.enabled=false")
    assert rc != 0 and (
        "invalid config: the workflow config (--configfile / --config): simulate.enabled is false and "
        "preprocess.input_files is empty" in text
    ), text[-2000:]
    rc, _, text = _jobs(tmp_path, "simulate_all", "--config", "set=simulate.shards=x")
    assert rc != 0 and (
        "invalid config: --config set=simulate.shards=x: simulate.shards: 'x' is not of type 'integer'"
        in text
    ), text[-2000:]
    assert "Traceback" not in text


def test_documented_configfile_orders_work(tmp_path: Path) -> None:
    """`--configfile` takes every following word as a config file (Snakemake reads a target after it as one,
    FileNotFoundError, before the workflow runs): the target goes first, or `--` ends the list."""
    _workflow(tmp_path)
    for args in (
        ["simulate_all", "--configfile", "other.yaml"],
        ["--configfiles", "other.yaml", "--", "simulate_all"],
    ):
        rc, jobs, text = _jobs(tmp_path, *args)
        assert rc == 0 and jobs["simulate"] == 4 * len(CLASSES), text[-2000:]
