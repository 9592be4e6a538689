"""Snakemake `script:` for rule preprocess: one fan-out group's ROOT jets -> its HDF5 shards.

Snakemake runs this file as `python <copy>.py`, so it is `__main__`; the guard keeps the spawned Dask
LocalCluster worker processes (which re-import the main module) from running the stage again.
The output directory is the one above the group summary (`{out}/groups/{group}.json`), so shard paths
follow from the rule's outputs.
"""

from pathlib import Path

from jetfm.logs import redirect_to_log


def main() -> None:
    from jetfm.preprocess.run import preprocess

    out_dir = str(Path(snakemake.output.summary).parents[1])
    group = int(snakemake.wildcards.group)
    with redirect_to_log(snakemake.log[0]):
        preprocess(dict(snakemake.config), list(snakemake.input), out_dir, progress=True, group=group)


if __name__ == "__main__":
    main()
