# train stage: supervised taggers (ParT, Deep Sets/PFN, jet MLP, jet-image CNN) on the preprocessed shards, and
# test-split comparison. Logic: src/jetfm/train/ (same functions as `jetfm train`).

TRAIN_MODELS = config["train"]["models"]


TRAIN_H5 = {split: h5_shards(split) for split in ("train", "val", "test")}


rule train:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        checkpoint=f"{RESULTS}/models/{{dataset}}_{{model}}/checkpoint.pt",
        history=f"{RESULTS}/models/{{dataset}}_{{model}}/history.csv",
        metrics=f"{RESULTS}/models/{{dataset}}_{{model}}/metrics.json",
        loss=report(
            f"{RESULTS}/models/{{dataset}}_{{model}}/loss.png",
            caption="../report/train_loss.rst",
            category="Training",
            subcategory="{model}",
        ),
        roc=report(
            f"{RESULTS}/models/{{dataset}}_{{model}}/roc.png",
            caption="../report/train_roc.rst",
            category="Training",
            subcategory="{model}",
        ),
        confusion=report(
            f"{RESULTS}/models/{{dataset}}_{{model}}/confusion.png",
            caption="../report/train_confusion.rst",
            category="Training",
            subcategory="{model}",
        ),
    params:
        out_dir=lambda wc: f"{RESULTS}/models/{wc.dataset}_{wc.model}",
        # Every value that changes this model's run (Snakemake's params rerun trigger).
        settings=lambda wc: train_settings(wc.model),
    log:
        f"{LOGS}/train/{{dataset}}_{{model}}.log",
    wildcard_constraints:
        model="part|pfn|mlp|cnn",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: __import__("jetfm.train.launch").train.launch.rule_threads(config, "train", minimum=2)
    resources:
        mem_mb=4000,
        **__import__("jetfm.train.launch").train.launch.rule_resources(config, "train", minimum=2),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train.py"


rule train_compare:
    input:
        metrics=expand(f"{RESULTS}/models/{DATASET}_{{model}}/metrics.json", model=TRAIN_MODELS),
    output:
        table=report(
            f"{RESULTS}/models/{{dataset}}_comparison.csv",
            caption="../report/train_comparison.rst",
            category="Training",
        ),
    log:
        f"{LOGS}/train/{{dataset}}_comparison.log",
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train_compare.py"


rule train_all:
    input:
        f"{RESULTS}/models/{DATASET}_comparison.csv",


ALL_TARGETS.append(f"{RESULTS}/models/{DATASET}_comparison.csv")
