# robustness stage: every trained tagger on held-out events in a nominal and in shifted versions (metrics, drop,
# output distance), temperature scaling, reliability and deep ensembles. Logic: src/jetfm/robustness/.
# The held-out events have their own seeds and event-id stream and their own HDF5 directory; no training rule
# reads them (tests/robustness/test_robustness_sim.py checks the rule graph).
ROBUSTNESS = config["robustness"]
ROBUSTNESS_DIR = paths.robustness_dir(DATASET)
ROBUSTNESS_H5 = paths.robustness_h5_dir(DATASET)
ROBUSTNESS_SIM = [
    paths.robustness_sim_file(DATASET, cls, shard)
    for cls in config["classes"]
    for shard in range(ROBUSTNESS["shards"])
]
ROBUSTNESS_RUNS = [runs.run_of(name, DATASET) for name in ROBUSTNESS["models"]]
# An evaluated run as an output pattern: `{run}` is a path relative to results/ (jetfm.robustness.runs).
ROBUSTNESS_EVAL = f"{ROBUSTNESS_DIR}/{{run}}"
ROBUSTNESS_RUN = paths.run_dir("{run}")
ROBUSTNESS_MEMBER = paths.member_dir("{dataset}", "{model}", "{member}")


rule robustness_sample:
    output:
        paths.robustness_sim_file("{dataset}", "{cls}", "{shard}"),
    log:
        paths.log_file("robustness", "{dataset}/sim/{cls}/{shard}"),
    params:
        # every setting that changes the events: the re-simulation of the nominal generator and detector
        # (jetfm.robustness.samples.resim_config), not how many jets or files the nominal sample has
        settings=config_params(
            "seed",
            "simulate",
            "resimulate.window_margin",
            "robustness.mode",
            "robustness.events_per_shard",
            "robustness.shifts",
            exclude=("simulate.shards", "simulate.jets_per_shard", "simulate.enabled"),
        ),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../../scripts/robustness_sample.py"


rule robustness_preprocess:
    input:
        ROBUSTNESS_SIM,
    output:
        shards=[str(paths.shard_path(ROBUSTNESS_H5, split, 0)) for split in paths.SPLITS],
        summary=f"{ROBUSTNESS_H5}/{paths.SUMMARY_NAME}",
    log:
        paths.log_file("robustness", f"{DATASET}/preprocess"),
    params:
        # the nominal preprocessing minus what jetfm.robustness.samples.preprocess_config replaces (every row
        # in test, one shard, no extra files) and where the work runs (it does not change the shards)
        settings=config_params(
            "preprocess",
            exclude=(
                "preprocess.split_fractions",
                "preprocess.shards_per_split",
                "preprocess.input_files",
                "preprocess.dask",
                "preprocess.chunksize",
            ),
        ),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    script:
        "../../scripts/robustness_preprocess.py"


rule robustness_member:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        checkpoint=f"{ROBUSTNESS_MEMBER}/checkpoint.pt",
        history=f"{ROBUSTNESS_MEMBER}/history.csv",
        metrics=f"{ROBUSTNESS_MEMBER}/metrics.json",
    params:
        out_dir=lambda wc: paths.member_dir(wc.dataset, wc.model, wc.member),
        # the model's own recipe (train: section) with seed = workflow seed + member index
        overrides=lambda wc: member_overrides(wc.member),
        settings=lambda wc: train_settings(wc.model, member_overrides(wc.member)),
    log:
        paths.log_file("robustness", "{dataset}_{model}_seed{member}"),
    wildcard_constraints:
        model="part|pfn|mlp",
        member=r"[1-9]\d*",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: launch.rule_threads(config, "train")
    resources:
        mem_mb=4000,
        **launch.rule_resources(config, "train"),
    retries: training_retries("train")  # + the resumed jobs of a walltime chain (slurm: in the config)
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train.py"


rule robustness_evaluate:
    input:
        checkpoint=f"{ROBUSTNESS_RUN}/checkpoint.pt",
        members=lambda wc: [f"{m}/checkpoint.pt" for m in robustness_members(wc.run)],
        sample=str(paths.shard_path(ROBUSTNESS_H5, "test", 0)),
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        dataset=TRAIN_H5["train"] + TRAIN_H5["val"] + TRAIN_H5["test"],
    output:
        temperature=f"{ROBUSTNESS_RUN}/temperature.json",
        evaluation=f"{ROBUSTNESS_EVAL}/evaluation.json",
        reliability=report(
            f"{ROBUSTNESS_EVAL}/reliability.png",
            caption="../report/robustness_reliability.rst",
            category="Robustness",
            subcategory="{run}",
        ),
    params:
        label=lambda wc: runs.label_of(wc.run, DATASET),
        run_dir=lambda wc: paths.run_dir(wc.run),
        member_dirs=lambda wc: robustness_members(wc.run),
        # the calibration bins and the samples' names; which models and members are evaluated are the job's
        # wildcards and inputs, and the sample's own settings rerun it through its input
        settings=config_params(
            "robustness",
            exclude=(
                "robustness.enabled",
                "robustness.models",
                "robustness.dask_cluster",
                "robustness.shards",
            ),
        ),
    log:
        paths.log_file("robustness", f"{DATASET}/evaluate_{{run}}"),
    wildcard_constraints:
        run=r"[A-Za-z0-9_.\-/]+",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/robustness_evaluate.py"


rule robustness_table:
    input:
        [f"{ROBUSTNESS_DIR}/{run}/evaluation.json" for run in ROBUSTNESS_RUNS],
    output:
        table=report(
            f"{ROBUSTNESS_DIR}/robustness.csv",
            caption="../report/robustness_table.rst",
            category="Robustness",
        ),
        figure=report(
            f"{ROBUSTNESS_DIR}/robustness.png",
            caption="../report/robustness_figure.rst",
            category="Robustness",
        ),
    log:
        paths.log_file("robustness", f"{DATASET}/table"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/robustness_table.py"


rule robustness_all:
    input:
        rules.robustness_table.output,
        [f"{ROBUSTNESS_DIR}/{run}/reliability.png" for run in ROBUSTNESS_RUNS],


if ROBUSTNESS["enabled"]:
    ALL_TARGETS.extend(rules.robustness_all.input)
