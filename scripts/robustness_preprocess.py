"""Snakemake `script:` for rule robustness_preprocess: the held-out views files -> HDF5, like the nominal
sample but every row in the test split (`jetfm.robustness.samples.preprocess_config`).

`__main__` guard: a Dask LocalCluster (robustness.dask_cluster: local) re-imports the main module.
"""

from pathlib import Path

from jetfm.logs import redirect_to_log


def main() -> None:
    from jetfm.preprocess.run import preprocess
    from jetfm.robustness.samples import preprocess_config

    out_dir = str(Path(snakemake.output.summary).parent)
    with redirect_to_log(snakemake.log[0]):
        preprocess(preprocess_config(dict(snakemake.config)), list(snakemake.input), out_dir, progress=False)


if __name__ == "__main__":
    main()
