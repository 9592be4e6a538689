# Shared by every stage file: config validation and path helpers (wildcard constraints: Snakefile).
from snakemake.utils import validate

from jetfm.preprocess.groups import assign_groups

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

DATASET = config["dataset"]
RESULTS = "results"
LOGS = "logs"

# Each stage file appends its final outputs here; the default target asks for all of them.
ALL_TARGETS = []


def shard_ids(n):
    """Zero-padded shard names 0000..n-1 as used in every path."""
    return [f"{i:04d}" for i in range(n)]


def sim_files(kind="nominal"):
    """All ROOT files of the simulation stage: nominal jets or re-simulation views."""
    if kind == "views":
        n, suffix = config["resimulate"]["shards"], ".views.root"
    else:
        n, suffix = config["simulate"]["shards"], ".root"
    return [
        f"{RESULTS}/sim/{DATASET}/{cls}/{shard}{suffix}"
        for cls in config["classes"]
        for shard in shard_ids(n)
    ]


def preprocess_inputs():
    """Nominal simulation, the re-simulation views when enabled, and any user-given ROOT files."""
    files = sim_files("nominal")
    if config["resimulate"]["enabled"]:
        files += sim_files("views")
    return files + list(config["preprocess"]["input_files"])


# Fan-out of preprocessing (src/jetfm/preprocess/groups.py): group g = files whose index mod
# shards_per_split is g; it writes shard g of every split. Computed once here, so the DAG stays linear.
PREPROCESS_GROUPS = assign_groups(preprocess_inputs(), config["preprocess"]["shards_per_split"])


def h5_shards(split):
    """Every HDF5 shard of a split (train/val/test): what a rule reading preprocessed jets takes as input."""
    return [f"{RESULTS}/h5/{DATASET}/{split}/{g:04d}.h5" for g in PREPROCESS_GROUPS]


def preprocess_threads():
    """A local Dask cluster uses workers x threads cores; Slurm or in-process drivers need one."""
    dask = config["preprocess"]["dask"]
    if dask["cluster"] == "local":
        return dask["workers"] * dask["threads_per_worker"]
    return 1


# Rate of a group job per worker for its Slurm runtime: bench/scale.py measured ~370 CPU-us/jet on 2 shared,
# overloaded cores (~84 us/jet unloaded, docs/architecture.md); 2000 jets/s leaves a margin on slow nodes.
PREPROCESS_JETS_PER_WORKER_S = 2000


def preprocess_group_jets(wildcards):
    """Jets in a group: simulated files as configured, others as a public JetClass file (100k jets)."""
    resim = config["resimulate"]
    size = {
        ".views.root": resim["events_per_shard"] * resim["views"],
        ".root": config["simulate"]["jets_per_shard"],
    }
    sim = f"{RESULTS}/sim/"
    return sum(
        next(n for end, n in size.items() if f.endswith(end)) if f.startswith(sim) else 100_000
        for f in PREPROCESS_GROUPS[int(wildcards.group)]
    )


def preprocess_mem_mb(wildcards, threads, attempt):
    """The driver (~0.5 GB) + per worker one chunk of ~20 KB/jet in flight and the merge buffers (~0.5 GB)."""
    dask = config["preprocess"]["dask"]
    per_worker = 500 + config["preprocess"]["chunksize"] * 20 // 1000 * dask["threads_per_worker"]
    workers = dask["workers"] if dask["cluster"] == "local" else 0
    return (500 + workers * per_worker) * attempt
