"""Snakemake `script:` entry of rules `pretrain` and `tokenizer` (as `jetfm pretrain`).

Resumes an unfinished run of the same settings; a stop on SIGTERM/SIGUSR1 checkpoints and exits for a retry.
"""

from jetfm.logs import redirect_to_log
from jetfm.pretrain.run import run_pretraining
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    method = snakemake.wildcards.get("method", "tokenizer")
    run_pretraining(
        snakemake.config,
        method,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        overrides={"progress": False, "threads": snakemake.threads},
        tokenizer=snakemake.input.tokenizer[0] if method == "mpm_tok" else None,
        resume="auto",
    )
