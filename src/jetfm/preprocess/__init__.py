"""Preprocessing: a coffea processor on Dask turns JetClass-layout ROOT jets into padded HDF5 shards.

`preprocess(config, inputs, out_dir)` (run.py) is the stage; the CLI (`jetfm preprocess`) and the Snakemake
rule both call it. Imports are lazy so `import jetfm.preprocess` stays cheap.
"""

from __future__ import annotations

from typing import Any


def preprocess(config: dict[str, Any], inputs: list[str], out_dir: str, **kwargs: Any) -> dict[str, Any]:
    """See `jetfm.preprocess.run.preprocess`."""
    from jetfm.preprocess.run import preprocess as _preprocess

    return _preprocess(config, inputs, out_dir, **kwargs)
