"""One error style (issue 11, failure 5): user errors are one line + exit 2 (--debug: the traceback), YAML
and --set errors name their source, `--help` marks unbuilt stages, `--version`, a directory --out fails first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jetfm import __version__, cli
from jetfm.config import load_config, parse_overrides


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_yaml_syntax_error_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: tiny\nsimulate:\n  jets_per_shard: [1, 2\n")
    code, _, err = _main(capsys, "simulate", "--config", str(bad), "--cls", "QCD", "--out", "x.root")
    line = _one_line_error(err)
    assert code == 2 and f"config file {bad}: YAML syntax error at line" in line, line


def test_malformed_set_value_is_blamed_on_the_set_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(
        capsys, "simulate", "--set", "simulate.jets_per_shard=[1", "--cls", "QCD", "--out", "x"
    )
    line = _one_line_error(err)
    assert code == 2 and "--set simulate.jets_per_shard=[1: value '[1' is not valid YAML" in line, line


def test_invalid_set_value_is_blamed_on_the_set_not_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": "tiny"}))
    with pytest.raises(ValueError) as err:
        load_config(cfg, parse_overrides(["simulate.jets_per_shard=-5"]))
    assert "--set simulate.jets_per_shard=-5: simulate.jets_per_shard" in str(err.value), err.value
    assert str(cfg) not in str(err.value)
    with pytest.raises(ValueError, match=r"--set seed.x=1: seed is 12345, not a section"):
        load_config(cfg, parse_overrides(["seed=12345", "seed.x=1"]))


def test_train_and_resimulate_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _main(
        capsys, "train", "--model", "mlp", "--h5-dir", str(tmp_path / "none"), "--out", str(tmp_path)
    )
    assert code == 2 and "does not exist" in _one_line_error(err)
    views = str(tmp_path / "v.root")
    code, _, err = _main(capsys, "resimulate", "--cls", "QCD", "--shard", "0", "--out", views,
                         "--set", "resimulate.mode=nonsense")  # fmt: skip
    assert code == 2 and "resimulate.mode" in _one_line_error(err)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cli.main(
            ["--debug", "train", "--model", "mlp", "--h5-dir", str(tmp_path / "none"), "--out", str(tmp_path)]
        )


def test_simulate_out_pointing_at_a_directory_fails_before_generating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _main(capsys, "simulate", "--cls", "QCD", "--out", str(tmp_path), "--no-progress")
    assert code == 2 and f"output {tmp_path} is a directory" in _one_line_error(err)


def test_every_stage_module_exists_and_has_parser_and_run() -> None:
    """The stage registry names real modules (a moved module would otherwise fail only when called)."""
    import importlib

    for stage, (module_name, _) in cli.STAGES.items():
        module = importlib.import_module(module_name)
        assert callable(module.configure_parser) and callable(module.run), stage


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "jetfm", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"jetfm {__version__}"


def test_config_options_work_before_and_after_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`jetfm scaling cost --config X` (config/scaling.yaml's header) = `jetfm scaling --config X cost`."""
    preset = str(Path(__file__).resolve().parents[2] / "config" / "scaling.yaml")
    after = _main(capsys, "scaling", "cost", "--config", preset)
    before = _main(capsys, "scaling", "--config", preset, "cost")
    default = _main(capsys, "scaling", "cost")
    assert after[0] == before[0] == default[0] == 0
    assert after[1] == before[1] != default[1]  # the preset's grid, not the default config's
    sweep = _main(capsys, "scaling", "cells", "--set", "scaling.data_sizes=[128]")
    assert sweep[0] == 0 and all("-D128-" in line for line in sweep[1].splitlines())
