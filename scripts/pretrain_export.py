"""Snakemake `script:` entry of rule `pretrain_export` (as `jetfm export`): backbone file + model card."""

from pathlib import Path

from jetfm.finetune.export import export_backbone
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    card = export_backbone(
        snakemake.input.checkpoint, Path(snakemake.output.backbone).parent, list(snakemake.input.train)
    )
    print(
        f"exported {card['architecture']['parameters']:,}-parameter backbone to {snakemake.output.backbone}"
    )
