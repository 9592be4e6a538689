# Shared by every stage file: config validation, path helpers, rerun-trigger params (wildcard constraints:
# Snakefile).
import copy
import os

from jetfm import paths
from jetfm.config import validate_config
from jetfm.preprocess.groups import assign_groups
from jetfm.robustness import runs
from jetfm.train import launch

# The package's validator (same schema, same defaults as snakemake.utils.validate) names the bad key and value
# in one line per error instead of dumping the whole schema and config.
try:
    config.update(validate_config(config, source="the workflow config (--configfile / --config)"))
except ValueError as exc:
    raise WorkflowError(str(exc)) from None

DATASET = config["dataset"]
# Every path under results/ and logs/ comes from jetfm.paths (the Python stages use the same functions), rooted
# at the config's results_dir and logs_dir (scratch on a cluster); configure() also exports them to the jobs.
try:
    paths.configure(config)
except ValueError as exc:
    raise WorkflowError(str(exc)) from None
RESULTS = paths.RESULTS
LOGS = paths.LOGS

# Each stage file appends its final outputs here; the default target asks for all of them.
ALL_TARGETS = []


def sim_files(kind="nominal"):
    """All ROOT files of the simulation stage: nominal jets or re-simulation views."""
    return paths.sim_files(config, views=kind == "views")


def preprocess_mem_mb(wildcards, threads, attempt):
    """A local Dask cluster: workers x `dask.memory` + 1 GB for the driver; otherwise the driver alone."""
    from dask.utils import parse_bytes

    dask = config["preprocess"]["dask"]
    if dask["cluster"] == "local":
        return (dask["workers"] * parse_bytes(dask["memory"]) // 10**6 + 1000) * attempt
    return 2000 * attempt


# The inputs, expanded now (globs and directories of preprocess.input_files; the simulation only when
# simulate.enabled): an entry that matches nothing stops the planning with one line naming it, instead of a
# "Nothing to be done" once shards exist. Group g = the files whose index mod shards_per_split is g;
# h5_shards() reads PREPROCESS_GROUPS when called, so every later rule sees these groups.
try:
    PREPROCESS_GROUPS = assign_groups(
        paths.preprocess_inputs(config), config["preprocess"]["shards_per_split"]
    )
except ValueError as exc:
    raise WorkflowError(str(exc)) from None


def h5_shards(split):
    """Every HDF5 shard of a split (train/val/test): what a rule reading preprocessed jets takes as input."""
    return [str(paths.shard_path(paths.h5_dir(DATASET), split, g)) for g in PREPROCESS_GROUPS]


def preprocess_threads():
    """A local Dask cluster uses workers x threads cores; Slurm or in-process drivers need one."""
    dask = config["preprocess"]["dask"]
    if dask["cluster"] == "local":
        return dask["workers"] * dask["threads_per_worker"]
    return 1


def config_params(*keys, exclude=()):
    """The resolved config values that change a rule's output, as one param: {dotted key: value}.

    Snakemake reruns a job whose params changed, so a rule lists here every section/key its output depends
    on (`exclude` drops sub-keys, at any depth below a listed key, that do not change it, e.g. how many shards
    exist or how many Dask workers share the work): changing any of them reruns exactly the jobs that read it.
    Usage:
        params: settings=config_params("seed", "simulate", exclude=("simulate.shards",))
    """
    values = {}
    for key in keys:
        node = config
        for part in key.split("."):
            node = node[part]
        values[key] = copy.deepcopy(node)
    for key in exclude:
        if key in values:
            values.pop(key)
            continue
        parts = key.split(".")
        # the longest listed key above the excluded one, then down its sub-sections
        for cut in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:cut]) in values:
                node = values[".".join(parts[:cut])]
                for part in parts[cut:-1]:
                    node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    node.pop(parts[-1], None)
                break
    return values


# Training keys that do not change a run's outputs: the bar, checkpoint cadence, CPU threads, and the ranks per
# job (gpus, nodes: the global batch is a setting, so results agree across rank counts within float tolerance)
TRAIN_NOT_OUTPUT = ("progress", "checkpoint_every", "threads", "gpus", "nodes")


def train_settings(model, overrides=None):
    """config_params for a training rule: the model's resolved TrainConfig (train: + sizes + model_overrides +
    seed, then `overrides`, e.g. an ensemble member's seed) minus TRAIN_NOT_OUTPUT, so editing one model's
    override reruns that model only."""
    from jetfm.train.config import from_workflow

    values = from_workflow(config, model, overrides).to_dict()
    return {k: v for k, v in values.items() if k not in TRAIN_NOT_OUTPUT}


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
    sim = paths.sim_dir(DATASET) + "/"
    return sum(
        next(n for end, n in size.items() if f.endswith(end)) if f.startswith(sim) else 100_000
        for f in PREPROCESS_GROUPS[int(wildcards.group)]
    )


def training_retries(stage):
    """`retries:` of a training rule: the profile's --retries (None) when it fits in one job; when
    slurm.runtime_minutes.<stage> exceeds the GPU partition's slurm.max_runtime_minutes, the resumed jobs of its
    walltime chain + slurm.chain_retries (jetfm.walltime; Snakemake knows --retries only after parsing)."""
    return launch.rule_retries(config, stage, config["slurm"]["chain_retries"])


def robustness_members(run):
    """The run directories of `run`'s deep-ensemble members (none unless its model has an ensemble)."""
    return [paths.run_dir(m) for m in runs.member_runs(run, DATASET, config["robustness"]["ensemble"])]


def member_overrides(member):
    """TrainConfig overrides of ensemble member `member`: its model's recipe, seed = run seed + member."""
    return {"seed": (config["train"]["seed"] or config["seed"]) + int(member)}
