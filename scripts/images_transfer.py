"""Snakemake `script:` entry of rule `images_transfer`: transfer vs random init over fractions x seeds, every
CNN run on the ranks of `train:` < `images.transfer.train_overrides` (gpus, nodes: jetfm.train.launch through
jetfm.train.stage_layout).

Finished runs are reused; a stop on SIGTERM/SIGUSR1 checkpoints the current run and exits for a retry, which
resumes it.
"""

from jetfm.images.study import run_transfer_study
from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry
from jetfm.train.stage_layout import layout_config

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    source = snakemake.config["images"]["transfer"]["source_checkpoint"] or None
    run_transfer_study(
        snakemake.config,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        source_checkpoint=source,
        threads=launch.rank_threads(layout_config(snakemake.config, "images"), "train", snakemake.threads),
    )
