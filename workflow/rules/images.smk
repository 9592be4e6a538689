# images: the average jet image per class (report) and the CNN transfer-learning study. The CNN itself is a
# registry model trained by rule `train` (model wildcard `cnn`). Logic: src/jetfm/images/.
from jetfm.train.stage_layout import layout_config

IMAGES = paths.images_dir(DATASET)
IMAGES_TRANSFER = paths.images_transfer_dir(DATASET)
# The same folders as output patterns (wildcard dataset).
IMAGES_OUT = paths.images_dir("{dataset}")
IMAGES_TRANSFER_OUT = paths.images_transfer_dir("{dataset}")


rule images_plot:
    input:
        test=TRAIN_H5["test"],
    output:
        figure=report(
            f"{IMAGES_OUT}/average_images.png",
            caption="../report/images_average.rst",
            category="Jet images",
        ),
        summary=f"{IMAGES_OUT}/average_images.json",
    params:
        # the CNN's image settings and how many jets are averaged
        settings=config_params("train.sizes.cnn", "images.plot_max_jets"),
    log:
        paths.log_file("images", "{dataset}_average_images"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/images_plot.py"


rule images_transfer:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        runs=f"{IMAGES_TRANSFER_OUT}/efficiency.json",
        summary=report(
            f"{IMAGES_TRANSFER_OUT}/efficiency.csv",
            caption="../report/images_transfer.rst",
            category="Jet images",
        ),
        figure=report(
            f"{IMAGES_TRANSFER_OUT}/efficiency.png",
            caption="../report/images_transfer.rst",
            category="Jet images",
        ),
    params:
        out_dir=lambda wc: paths.images_transfer_dir(wc.dataset),
        # everything that changes the runs: the study's settings, the train section (lr, steps, ...), seed
        settings=config_params(
            "seed",
            "train",
            "images.transfer",
            exclude=(
                "images.transfer.enabled", "train.models", *(f"train.{k}" for k in TRAIN_NOT_OUTPUT),
                *(f"images.transfer.train_overrides.{k}" for k in TRAIN_NOT_OUTPUT),
            ),  # fmt: skip
        ),
    log:
        paths.log_file("images", "{dataset}_transfer"),
    # ranks of every CNN run (train.gpus x train.nodes, overridable in images.transfer.train_overrides:
    # jetfm.train.launch via stage_layout): CPUs here, Slurm tasks, GPUs and the stop signal in its resources
    threads: launch.rule_threads(layout_config(config, "images"), "train", minimum=2)
    resources:
        mem_mb=4000,
        **launch.rule_resources(layout_config(config, "images"), "train", minimum=2),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/images_transfer.py"


rule images_transfer_all:
    input:
        f"{IMAGES_TRANSFER}/efficiency.csv",


rule images_all:
    input:
        f"{IMAGES}/average_images.png",
        f"{IMAGES_TRANSFER}/efficiency.csv",


ALL_TARGETS.append(f"{IMAGES}/average_images.png")
if config["images"]["transfer"]["enabled"]:
    ALL_TARGETS.append(f"{IMAGES_TRANSFER}/efficiency.csv")
