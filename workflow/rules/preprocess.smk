# preprocess stage: a coffea processor on Dask turns the ROOT jets into padded HDF5 shards
# (logic in src/jetfm/preprocess; `jetfm preprocess` runs the same function without Snakemake).
PREPROCESS_DIR = f"{RESULTS}/h5/{DATASET}"
PREPROCESS_SHARDS = expand(
    "{dir}/{split}/{shard}.h5",
    dir=PREPROCESS_DIR,
    split=["train", "val", "test"],
    shard=shard_ids(config["preprocess"]["shards_per_split"]),
)


rule preprocess:
    input:
        preprocess_inputs(),
    output:
        shards=PREPROCESS_SHARDS,
        summary=report(
            f"{PREPROCESS_DIR}/summary.json",
            caption="../report/preprocess_summary.rst",
            category="Preprocessing",
        ),
    log:
        f"{LOGS}/preprocess/{DATASET}.log",
    conda:
        # `-e ../` installs jetfm with coffea, dask, dask-jobqueue, uproot and h5py
        "../../envs/sim.yaml"
    params:
        # where and in how many pieces the work runs does not change the shards (merged in event order)
        settings=config_params("preprocess", exclude=("preprocess.dask", "preprocess.chunksize")),
    threads: preprocess_threads()
    resources:
        # local cluster: its workers x dask.memory (+ the driver); Slurm workers are jobs of their own
        cpus_per_task=preprocess_threads(),
        mem_mb=lambda wildcards, attempt: preprocess_mem_mb() * attempt,
        runtime=240,
    script:
        "../../scripts/preprocess.py"


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
