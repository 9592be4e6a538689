# preprocess stage: a coffea processor on Dask turns the ROOT jets into padded HDF5 shards, as a fan-out:
# one job per group of input files (mapping in src/jetfm/preprocess/groups.py), each writing shard {group} of
# every split, then one summary over all groups (counts in == out).
# Each job starts its own Dask cluster (preprocess.dask): a LocalCluster lives and dies with its job on the
# cores the job was given, so jobs fail and rerun independently and no scheduler outlives the workflow.
# `jetfm preprocess` runs the same groups one after another.
from jetfm import paths

# PREPROCESS_GROUPS (common.smk): the fan-out's file groups, expanded when the DAG is built.
PREPROCESS_NOT_OUTPUT = ("preprocess.dask", "preprocess.chunksize") + (
    ("preprocess.splits_from",) if config["preprocess"]["splits_from"] == "hash" else ()
)
PREPROCESS_DIR = paths.h5_dir(DATASET)
PREPROCESS_SHARDS = [shard for split in paths.SPLITS for shard in h5_shards(split)]
PREPROCESS_SUMMARY = f"{PREPROCESS_DIR}/{paths.SUMMARY_NAME}"
PREPROCESS_FIGURE = f"{paths.plots_dir(DATASET)}/preprocess_features.png"


rule preprocess:
    input:
        lambda wildcards: PREPROCESS_GROUPS[int(wildcards.group)],
    output:
        shards=[str(paths.shard_path(PREPROCESS_DIR, split, "{group}")) for split in paths.SPLITS],
        summary=f"{PREPROCESS_DIR}/{paths.GROUP_SUMMARY_DIR}/{{group}}.json",
    log:
        paths.log_file("preprocess", f"{DATASET}/{{group}}"),
    params:
        # shards_per_split fixes which files form a group and which shards it writes; where and in how many
        # pieces the work runs does not change the shards (merged in event order); splits_from only when set
        # to files, so shards made before the key existed (hash) are not redone
        settings=config_params("preprocess", exclude=PREPROCESS_NOT_OUTPUT),
    wildcard_constraints:
        group=r"\d+",
    conda:
        # `-e ../` installs jetfm with coffea, dask, dask-jobqueue, uproot and h5py
        "../../envs/sim.yaml"
    threads: preprocess_threads()
    resources:
        # local cluster: its workers x dask.memory (+ the driver); Slurm workers are jobs of their own
        cpus_per_task=preprocess_threads(),
        mem_mb=preprocess_mem_mb,
        # minutes: the group's jets at the measured rate per worker, plus cluster startup
        runtime=lambda wildcards, threads: 10
        + preprocess_group_jets(wildcards) // (PREPROCESS_JETS_PER_WORKER_S * 60 * threads),
    script:
        "../../scripts/preprocess.py"


# Reads one small JSON per group (seconds even at 1250 groups): not worth a Slurm queue wait.
localrules:
    preprocess_summary,


rule preprocess_summary:
    input:
        [str(paths.group_summary_path(PREPROCESS_DIR, g)) for g in PREPROCESS_GROUPS],
    output:
        report(
            PREPROCESS_SUMMARY,
            caption="../report/preprocess_summary.rst",
            category="Preprocessing",
        ),
    log:
        paths.log_file("preprocess", f"{DATASET}_summary"),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    script:
        "../../scripts/preprocess_summary.py"


rule preprocess_plot:
    input:
        shards=PREPROCESS_SHARDS,
        summary=PREPROCESS_SUMMARY,
    output:
        report(
            PREPROCESS_FIGURE,
            caption="../report/preprocess_features.rst",
            category="Preprocessing",
        ),
    log:
        paths.log_file("preprocess", f"{DATASET}_plot"),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../../scripts/preprocess_plot.py"


rule preprocess_all:
    input:
        PREPROCESS_SHARDS,
        PREPROCESS_SUMMARY,
        PREPROCESS_FIGURE,


ALL_TARGETS.extend(rules.preprocess_all.input)
