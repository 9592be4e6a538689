"""Snakemake `script:` entry of rule `fpga_train`: distil, then prune + QAT (`jetfm fpga train`), both phases
on the ranks of `train:` < `fpga.train` (gpus, nodes: jetfm.train.launch through jetfm.train.stage_layout).

The training files: the train split plus the transfer set's shards (`fpga.transfer`; the views share the
train shards, so the list is the train split's, and the distillation reads their view rows too).

A stop on SIGTERM/SIGUSR1 checkpoints and exits for a retry, which trains the student again (the pruning
schedule counts the objective's own calls, so the runs do not resume mid-way).
"""

from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry
from jetfm.train.stage_layout import layout_config

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    layout = layout_config(snakemake.config, "fpga")
    threads = launch.rank_threads(layout, "train", snakemake.threads)
    files = {split: list(snakemake.input[split]) for split in ("train", "val", "test")}
    files["train"] = list(dict.fromkeys([*files["train"], *snakemake.input.transfer]))
    launch.run(
        "jetfm.fpga.stage:train_student",
        {
            "config": snakemake.config,
            "student": snakemake.wildcards.student,
            "files": files,
            "out_dir": snakemake.params.out_dir,
            "teacher": snakemake.input.teacher,
            "overrides": {"progress": False, "threads": threads},
        },
        layout,
        "train",
        snakemake.params.out_dir,
    )
