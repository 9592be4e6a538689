"""The entry of the train stage: one supervised run from the workflow config (`jetfm train`, rule `train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_training(
    config: dict[str, Any],
    model: str,
    files: dict[str, list[str]],
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    resume: bool | str = False,
) -> dict[str, Any]:
    """Workflow config + model name + split files -> a trained run in out_dir (CLI and Snakemake entry).

    resume: True continues <out_dir>/checkpoint.pt (refusing another config), "auto" continues an unfinished
    run of the same config if there is one (jetfm.train.resume), False starts from scratch.
    """
    from jetfm.train.config import from_workflow
    from jetfm.train.loop import train

    cfg = from_workflow(config, model, overrides)
    return train(
        cfg, files["train"], files["val"], files.get("test"), out_dir, resume=resume, workflow_config=config
    )
