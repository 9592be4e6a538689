"""Launcher layouts of the two training stages whose settings live under their own keys: the jet-image
transfer study (`images.transfer.train_overrides`) and the FPGA students (`fpga.train`).

`layout_config(config, stage)` hands the launcher a config whose `train:` section has the stage's section
(the one `launch.STAGE_SECTIONS` names for it) merged over it, to be used with the launcher's stage "train"
(`launch.run(..., layout_config(config, "fpga"), "train", ...)`, likewise `rule_threads` /
`rule_resources`), plus what is particular to these stages (below).

FPGA students are tiny: with `device: auto` their ranks are CPU processes (no `--gpus-per-task`; the Slurm
profile runs `fpga_train` on the CPU partition); `device: cuda` in `fpga.train` asks for a GPU per rank.
Both FPGA phases (float distillation, then pruning + QAT) run in the one job, so the ranks come from
`fpga.train`; `gpus`/`nodes` in `fpga.qat` or a student's overrides would be ignored, so they are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jetfm.train import launch

SECTIONS = {"images": "images.transfer.train_overrides", "fpga": "fpga.train"}


def layout_config(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """`config` with `stage`'s training section merged over `train:` (the launcher's view, stage "train")."""
    if stage not in SECTIONS:
        raise ValueError(f"unknown stage {stage!r} for layout_config; known: {sorted(SECTIONS)}")
    merged = {**launch.section(config, "train"), **launch.section(config, SECTIONS[stage])}
    if stage == "fpga":
        _refuse_phase_layouts(config)
        if merged.get("device", "auto") == "auto":
            merged["device"] = "cpu"  # the layout only: no GPU asked for (TrainConfig keeps `auto`)
    return {**config, "train": merged}


def _refuse_phase_layouts(config: Mapping[str, Any]) -> None:
    places = {"fpga.qat": launch.section(config, "fpga.qat")}
    for student, phases in launch.section(config, "fpga.overrides").items():
        for phase, values in (phases or {}).items():
            places[f"fpga.overrides.{student}.{phase}"] = dict(values or {})
    for where, values in places.items():
        found = sorted(set(values) & set(launch.LAUNCH_KEYS))
        if found:
            raise ValueError(
                f"{where}.{found[0]}: both phases of an FPGA student run in one job on the ranks of "
                f"fpga.train; set fpga.train.{found[0]} instead"
            )
