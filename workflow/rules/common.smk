# Shared by every rule file: config validation, path helpers, wildcard constraints.
from snakemake.utils import validate

from jetfm import CLASSES

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

DATASET = config["dataset"]
RESULTS = "results"
LOGS = "logs"

# Each rule file appends the final outputs of its stage; `rule all` asks for all of them.
ALL_TARGETS = []


wildcard_constraints:
    cls="|".join(CLASSES),
    shard=r"\d{4}",
    split="train|val|test",
    dataset=r"[A-Za-z0-9_.-]+",


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
