"""Where the processor runs: a Dask client from the `preprocess.dask` config section.

`local`: a process-based `distributed.LocalCluster` (scripts that use it need the
`if __name__ == "__main__":` guard, because worker processes are spawned and re-import the main module).
`slurm`: a `dask_jobqueue.SLURMCluster`, one Slurm job per worker, started with this interpreter so
workers import the same jetfm. `none`: no client; the caller runs in-process.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def make_client(dask_cfg: dict[str, Any]) -> Iterator[Any]:
    """Yield a `distributed.Client` (or None for cluster: none); cluster and client are closed on exit."""
    kind = dask_cfg.get("cluster", "local")
    if kind == "none":
        yield None
        return
    from distributed import Client

    workers = int(dask_cfg.get("workers", 2))
    if kind == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=int(dask_cfg.get("threads_per_worker", 1)),
            processes=True,
            dashboard_address=":0",  # a free port: several runs may share a node
            silence_logs=logging.WARNING,
        )
    elif kind == "slurm":
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(
            queue=dask_cfg.get("queue"),
            account=dask_cfg.get("account"),
            cores=int(dask_cfg.get("cores", 1)),
            processes=1,
            memory=str(dask_cfg.get("memory", "2GB")),
            walltime=str(dask_cfg.get("walltime", "01:00:00")),
            job_extra_directives=list(dask_cfg.get("job_extra_directives", [])),
            python=sys.executable,
            scheduler_options={"dashboard_address": ":0"},
        )
        log.info("SLURMCluster job script:\n%s", cluster.job_script())
        cluster.scale(jobs=workers)
    else:
        raise ValueError(f"preprocess.dask.cluster must be local, slurm or none, got {kind!r}")
    try:
        with Client(cluster) as client:
            timeout = float(dask_cfg.get("startup_timeout_s", 600))
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"no Dask worker of the {kind} cluster started within {timeout:.0f} s "
                    f"(Slurm queue {dask_cfg.get('queue')!r}; check `squeue` and the job script above)"
                ) from exc
            log.info("Dask %s cluster up: %s", kind, client)
            yield client
    finally:
        cluster.close()
