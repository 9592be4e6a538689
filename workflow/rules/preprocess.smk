# preprocess stage: a coffea processor on Dask turns the ROOT jets into padded HDF5 shards, as a fan-out:
# one job per group of input files (PREPROCESS_GROUPS in common.smk; mapping in src/jetfm/preprocess/groups.py),
# each writing shard {group} of every split, then one summary over all groups (counts in == out).
# Each job starts its own Dask cluster (preprocess.dask): a LocalCluster lives and dies with its job on the
# cores the job was given, so jobs fail and rerun independently and no scheduler outlives the workflow.
# `jetfm preprocess` runs the same groups one after another.
PREPROCESS_DIR = f"{RESULTS}/h5/{DATASET}"
PREPROCESS_SHARDS = [shard for split in ("train", "val", "test") for shard in h5_shards(split)]
rule preprocess:
    input:
        lambda wildcards: PREPROCESS_GROUPS[int(wildcards.group)],
    output:
        shards=expand(f"{PREPROCESS_DIR}/{{split}}/{{{{group}}}}.h5", split=("train", "val", "test")),
        summary=f"{PREPROCESS_DIR}/groups/{{group}}.json",
    log:
        f"{LOGS}/preprocess/{DATASET}/{{group}}.log",
    params:
        # the number of groups fixes which files form a group and which shards it writes
        groups=config["preprocess"]["shards_per_split"],
        # where and in how many pieces the work runs does not change the shards (merged in event order)
        settings=config_params("preprocess", exclude=("preprocess.dask", "preprocess.chunksize")),
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
        [f"{PREPROCESS_DIR}/groups/{g:04d}.json" for g in PREPROCESS_GROUPS],
    output:
        report(
            f"{PREPROCESS_DIR}/summary.json",
            caption="../report/preprocess_summary.rst",
            category="Preprocessing",
        ),
    log:
        f"{LOGS}/preprocess/{DATASET}_summary.log",
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
        summary=f"{PREPROCESS_DIR}/summary.json",
    output:
        report(
            f"{RESULTS}/plots/{DATASET}/preprocess_features.png",
            caption="../report/preprocess_features.rst",
            category="Preprocessing",
        ),
    log:
        f"{LOGS}/preprocess/{DATASET}_plot.log",
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
        f"{PREPROCESS_DIR}/summary.json",
        f"{RESULTS}/plots/{DATASET}/preprocess_features.png",


ALL_TARGETS.extend(rules.preprocess_all.input)
