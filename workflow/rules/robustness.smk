# robustness stage: every trained tagger on held-out events in a nominal and in shifted versions (metrics, drop,
# output distance), temperature scaling, reliability and deep ensembles. Logic: src/jetfm/robustness/.
# The held-out events have their own seeds and event-id stream and their own HDF5 directory; no training rule
# reads them (tests/test_robustness_workflow.py checks the rule graph).
from jetfm.robustness import runs

ROBUSTNESS = config["robustness"]
ROBUSTNESS_DIR = f"{RESULTS}/robustness/{DATASET}"
ROBUSTNESS_H5 = f"{RESULTS}/h5/{DATASET}_robustness"
ROBUSTNESS_SIM = [
    f"{ROBUSTNESS_DIR}/sim/{cls}/{shard}.views.root"
    for cls in config["classes"]
    for shard in shard_ids(ROBUSTNESS["shards"])
]
ROBUSTNESS_RUNS = [runs.run_of(name, DATASET) for name in ROBUSTNESS["models"]]


rule robustness_sample:
    output:
        f"{RESULTS}/robustness/{{dataset}}/sim/{{cls}}/{{shard}}.views.root",
    log:
        f"{LOGS}/robustness/{{dataset}}/sim/{{cls}}/{{shard}}.log",
    params:
        # every setting that changes the events (Snakemake reruns the job when a param changes)
        mode=ROBUSTNESS["mode"],
        events=ROBUSTNESS["events_per_shard"],
        shifts=ROBUSTNESS["shifts"],
        simulate=config["simulate"],
        seed=config["seed"],
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
        shards=expand(f"{ROBUSTNESS_H5}/{{split}}/0000.h5", split=["train", "val", "test"]),
        summary=f"{ROBUSTNESS_H5}/summary.json",
    log:
        f"{LOGS}/robustness/{DATASET}/preprocess.log",
    params:
        preprocess=config["preprocess"],
        cluster=ROBUSTNESS["dask_cluster"],
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
        checkpoint=f"{RESULTS}/models/{{dataset}}_{{model}}_seed{{member}}/checkpoint.pt",
        history=f"{RESULTS}/models/{{dataset}}_{{model}}_seed{{member}}/history.csv",
        metrics=f"{RESULTS}/models/{{dataset}}_{{model}}_seed{{member}}/metrics.json",
    params:
        out_dir=lambda wc: f"{RESULTS}/models/{wc.dataset}_{wc.model}_seed{wc.member}",
        # the model's own recipe (train: section) with seed = workflow seed + member index
        overrides=lambda wc: {"seed": (config["train"].get("seed") or config["seed"]) + int(wc.member)},
        train_config=config["train"],
    log:
        f"{LOGS}/robustness/{{dataset}}_{{model}}_seed{{member}}.log",
    wildcard_constraints:
        model="part|pfn|mlp",
        member=r"[1-9]\d*",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: __import__("jetfm.train.launch").train.launch.rule_threads(config, "train")
    resources:
        mem_mb=4000,
        **__import__("jetfm.train.launch").train.launch.rule_resources(config, "train"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train.py"


rule robustness_evaluate:
    input:
        checkpoint=f"{RESULTS}/{{run}}/checkpoint.pt",
        members=lambda wc: [
            f"{RESULTS}/{m}/checkpoint.pt" for m in runs.member_runs(wc.run, DATASET, ROBUSTNESS["ensemble"])
        ],
        sample=f"{ROBUSTNESS_H5}/test/0000.h5",
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        dataset=TRAIN_H5["train"] + TRAIN_H5["val"] + TRAIN_H5["test"],
    output:
        temperature=f"{RESULTS}/{{run}}/temperature.json",
        evaluation=f"{ROBUSTNESS_DIR}/{{run}}/evaluation.json",
        reliability=report(
            f"{ROBUSTNESS_DIR}/{{run}}/reliability.png",
            caption="../report/robustness_reliability.rst",
            category="Robustness",
            subcategory="{run}",
        ),
    params:
        label=lambda wc: runs.label_of(wc.run, DATASET),
        run_dir=lambda wc: f"{RESULTS}/{wc.run}",
        member_dirs=lambda wc: [
            f"{RESULTS}/{m}" for m in runs.member_runs(wc.run, DATASET, ROBUSTNESS["ensemble"])
        ],
        section=ROBUSTNESS,
    log:
        f"{LOGS}/robustness/{DATASET}/evaluate_{{run}}.log",
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
        f"{LOGS}/robustness/{DATASET}/table.log",
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
