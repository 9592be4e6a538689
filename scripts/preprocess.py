"""Snakemake `script:` for rule preprocess: ROOT jets -> HDF5 shards (jetfm.preprocess.run.preprocess).

Snakemake runs this file as `python <copy>.py`, so it is `__main__`; the guard keeps the spawned Dask
LocalCluster worker processes (which re-import the main module) from running the stage again.
The output directory is the parent of the summary file, so shard paths follow from the rule's outputs.
"""

from pathlib import Path

from jetfm.logs import redirect_to_log


def main() -> None:
    from jetfm.preprocess.run import preprocess

    out_dir = str(Path(snakemake.output.summary).parent)
    with redirect_to_log(snakemake.log[0]):
        preprocess(dict(snakemake.config), list(snakemake.input), out_dir, progress=True)


if __name__ == "__main__":
    main()
