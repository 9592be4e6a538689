"""Snakemake `script:` entry of rules `pretrain` and `tokenizer` (as `jetfm pretrain`), on the stage's ranks
(train.gpus x train.nodes, overridable in pretrain.train; jetfm.train.launch).

Resumes an unfinished run of the same settings; a stop on SIGTERM/SIGUSR1 checkpoints and exits for a retry.
"""

from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    method = snakemake.wildcards.get("method", "tokenizer")
    stage = "tokenizer" if method == "tokenizer" else "pretrain"
    threads = launch.rank_threads(snakemake.config, stage, snakemake.threads)
    launch.run(
        "jetfm.pretrain.run:run_pretraining",
        {
            "config": snakemake.config,
            "method": method,
            "files": {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
            "out_dir": snakemake.params.out_dir,
            "overrides": {"progress": False, "threads": threads},
            "tokenizer": snakemake.input.tokenizer[0] if method == "mpm_tok" else None,
            "resume": "auto",
        },
        snakemake.config,
        stage,
        snakemake.params.out_dir,
    )
