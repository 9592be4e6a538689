"""Snakemake `script:` for rule robustness_evaluate: one tagger (and its ensemble) on every sample."""

from jetfm.logs import redirect_to_log
from jetfm.robustness.evaluate import run_evaluation

with redirect_to_log(snakemake.log[0]):
    run_evaluation(
        dict(snakemake.config),
        snakemake.params.label,
        snakemake.params.run_dir,
        {
            k: [f] if isinstance(f := snakemake.input[k], str) else list(f)
            for k in ("sample", "val", "test", "dataset")
        },
        {k: snakemake.output[k] for k in ("temperature", "evaluation", "reliability")},
        member_dirs=list(snakemake.params.member_dirs),
        threads=snakemake.threads,
    )
