# images: the average jet image per class (report) and the CNN transfer-learning study. The CNN itself is a
# registry model trained by rule `train` (model wildcard `cnn`). Logic: src/jetfm/images/.

IMAGES = f"{RESULTS}/images/{DATASET}"


rule images_plot:
    input:
        test=TRAIN_H5["test"],
    output:
        figure=report(
            f"{RESULTS}/images/{{dataset}}/average_images.png",
            caption="../report/images_average.rst",
            category="Jet images",
        ),
        summary=f"{RESULTS}/images/{{dataset}}/average_images.json",
    params:
        cnn_size=config["train"]["sizes"]["cnn"],
        max_jets=config["images"]["plot_max_jets"],
    log:
        f"{LOGS}/images/{{dataset}}_average_images.log",
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
        runs=f"{RESULTS}/images/{{dataset}}/transfer/efficiency.json",
        summary=report(
            f"{RESULTS}/images/{{dataset}}/transfer/efficiency.csv",
            caption="../report/images_transfer.rst",
            category="Jet images",
        ),
        figure=report(
            f"{RESULTS}/images/{{dataset}}/transfer/efficiency.png",
            caption="../report/images_transfer.rst",
            category="Jet images",
        ),
    params:
        out_dir=lambda wc: f"{RESULTS}/images/{wc.dataset}/transfer",
        # everything that changes the runs: the study's settings, the train section (lr, steps, ...), seed
        transfer=config["images"]["transfer"],
        train_config=config["train"],
        seed=config["seed"],
    log:
        f"{LOGS}/images/{{dataset}}_transfer.log",
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/images_transfer.py"


rule images_transfer_all:
    input:
        f"{IMAGES}/transfer/efficiency.csv",


rule images_all:
    input:
        f"{IMAGES}/average_images.png",
        f"{IMAGES}/transfer/efficiency.csv",


ALL_TARGETS.append(f"{IMAGES}/average_images.png")
if config["images"]["transfer"]["enabled"]:
    ALL_TARGETS.append(f"{IMAGES}/transfer/efficiency.csv")
