"""Walltime caps (jetfm.walltime, issue 26 item 4): a training stage expected to run longer than its
partition's `slurm.max_runtime_minutes` is requested at the cap with enough retries for the chain of resumed
jobs; config/jetclass-scale.yaml asks for no runtime above the cap. That a stopped and resumed run ends as the
uninterrupted one: tests/train/test_train.py (walltime-chain); the dry run under profiles/slurm:
tests/workflow/test_presets.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jetfm import walltime
from jetfm.config import validate_config
from jetfm.train import launch

REPO = Path(__file__).resolve().parents[2]
STAGES = ("train", "tokenizer", "pretrain", "finetune")  # the rules that call launch.rule_resources


def _slurm(**caps: int | None) -> dict:
    return validate_config({"slurm": {"max_runtime_minutes": caps}})


def test_a_job_longer_than_the_cap_is_requested_at_the_cap_and_chained() -> None:
    config = _slurm(gpu=2880)
    assert walltime.cap(config, "gpu", 720) == (720, 0)
    assert walltime.cap(config, "gpu", 2880) == (2880, 0)
    # the largest cell of config/scaling.yaml: 8047 min -> 3 jobs of 2880 (each trains 2875 before its stop)
    assert walltime.cap(config, "gpu", 8047) == (2880, 2)
    assert walltime.cap(config, "gpu", 2 * 2875) == (2880, 1)
    assert walltime.cap(config, "gpu", 2 * 2875 + 1) == (2880, 2)
    assert walltime.cap(_slurm(gpu=None), "gpu", 10_000) == (10_000, 0)  # null: uncapped
    assert walltime.retries(3, 0) is None and walltime.retries(3, 2) == 5
    with pytest.raises(ValueError, match="unknown partition 'a100'"):
        walltime.cap(config, "a100", 10)
    with pytest.raises(ValueError, match=r"slurm.max_runtime_minutes.gpu: 5 is less than the minimum of 10"):
        _slurm(gpu=5)


def test_training_rules_get_the_capped_runtime_and_the_chains_retries() -> None:
    slurm = {"max_runtime_minutes": {"gpu": 600}, "runtime_minutes": {"pretrain": 1500}, "chain_retries": 1}
    config = validate_config({"slurm": slurm})
    pretrain = launch.rule_resources(config, "pretrain")
    assert pretrain["runtime"] == 600 and pretrain["slurm_extra"].startswith("--signal=TERM@300")
    # 1500 min in jobs of 600 that train 595 each: 3 jobs, so 2 resubmissions + chain_retries
    assert launch.rule_retries(config, "pretrain", config["slurm"]["chain_retries"]) == 2 + 1
    finetune = launch.rule_resources(config, "finetune")  # default 480 min: one job, the profile's retries
    assert finetune["runtime"] == 480 and launch.rule_retries(config, "finetune", 1) is None
    assert "runtime" not in launch.rule_resources({}, "train")  # no slurm section: the profile decides


def test_jetclass_scale_asks_for_no_training_runtime_above_the_cap() -> None:
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    preset = yaml.safe_load((REPO / "config/jetclass-scale.yaml").read_text())
    config = validate_config({**default, **preset})
    cap = walltime.max_runtime(config, "gpu")
    assert cap is not None
    for stage in STAGES:
        assert launch.rule_resources(config, stage)["runtime"] <= cap, stage
