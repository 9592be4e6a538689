"""Snakemake `script:` entry of rules `pretrain` and `tokenizer` (as `jetfm pretrain`)."""

from jetfm.logs import redirect_to_log
from jetfm.train.pretrain import run_pretraining

with redirect_to_log(snakemake.log[0]):
    method = snakemake.wildcards.get("method", "tokenizer")
    run_pretraining(
        snakemake.config,
        method,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        overrides={"progress": False, "threads": snakemake.threads},
        tokenizer=snakemake.input.tokenizer[0] if method == "mpm_tok" else None,
    )
