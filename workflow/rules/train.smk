# train stage: supervised taggers (ParT, Deep Sets/PFN, jet MLP, jet-image CNN) on the preprocessed shards, and
# test-split comparison. Logic: src/jetfm/train/ (same functions as `jetfm train`).

TRAIN_MODELS = config["train"]["models"]


TRAIN_H5 = {split: h5_shards(split) for split in ("train", "val", "test")}
# A run's directory as an output pattern (wildcards dataset, model).
TRAIN_RUN = paths.model_dir("{dataset}", "{model}")


rule train:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        checkpoint=f"{TRAIN_RUN}/checkpoint.pt",
        history=f"{TRAIN_RUN}/history.csv",
        metrics=f"{TRAIN_RUN}/metrics.json",
        loss=report(
            f"{TRAIN_RUN}/loss.png",
            caption="../report/train_loss.rst",
            category="Training",
            subcategory="{model}",
        ),
        roc=report(
            f"{TRAIN_RUN}/roc.png",
            caption="../report/train_roc.rst",
            category="Training",
            subcategory="{model}",
        ),
        confusion=report(
            f"{TRAIN_RUN}/confusion.png",
            caption="../report/train_confusion.rst",
            category="Training",
            subcategory="{model}",
        ),
    params:
        out_dir=lambda wc: paths.model_dir(wc.dataset, wc.model),
        # Every value that changes this model's run (Snakemake's params rerun trigger).
        settings=lambda wc: train_settings(wc.model),
    log:
        paths.log_file("train", "{dataset}_{model}"),
    wildcard_constraints:
        model="part|pfn|mlp|cnn",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: launch.rule_threads(config, "train", minimum=2)
    resources:
        mem_mb=4000,
        **launch.rule_resources(config, "train", minimum=2),
    retries: training_retries("train")  # + the resumed jobs of a walltime chain (slurm: in the config)
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train.py"


rule train_compare:
    input:
        metrics=[f"{paths.model_dir(DATASET, model)}/metrics.json" for model in TRAIN_MODELS],
    output:
        table=report(
            paths.comparison_table("{dataset}"),
            caption="../report/train_comparison.rst",
            category="Training",
        ),
    log:
        paths.log_file("train", "{dataset}_comparison"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/train_compare.py"


rule train_all:
    input:
        paths.comparison_table(DATASET),


ALL_TARGETS.append(paths.comparison_table(DATASET))
