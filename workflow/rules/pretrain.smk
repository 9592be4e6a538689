# pretrain and finetune stages: self-supervised pretraining of the ParT backbone (masked particles, RS3L
# contrastive; a VQ-VAE tokenizer first for token targets), fine-tuning vs scratch on labelled fractions, the
# data-efficiency table and the report's headline. Logic: src/jetfm/train/ (same functions as
# `jetfm pretrain` / `jetfm finetune`).

PRETRAIN_METHODS = config["pretrain"]["methods"]
FINETUNE = config["finetune"]
FINETUNE_METHODS = ["scratch"] + [
    m + ("-probe" if mode == "frozen" else "")
    for m in PRETRAIN_METHODS
    for mode in FINETUNE["modes"]
]
FRACTIONS = [f"{f:g}" for f in FINETUNE["fractions"]]
SEED_INDICES = [str(i) for i in range(FINETUNE["seeds"])]
PRETRAIN_DIR = f"{RESULTS}/pretrain/{DATASET}"
FINETUNE_DIR = f"{RESULTS}/finetune/{DATASET}"


rule tokenizer:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        checkpoint=f"{RESULTS}/pretrain/{{dataset}}_tokenizer/checkpoint.pt",
        summary=f"{RESULTS}/pretrain/{{dataset}}_tokenizer/summary.json",
        loss=report(
            f"{RESULTS}/pretrain/{{dataset}}_tokenizer/loss.png",
            caption="../report/pretrain_tokenizer.rst",
            category="Pretraining",
            subcategory="tokenizer",
        ),
    params:
        out_dir=lambda wc: f"{RESULTS}/pretrain/{wc.dataset}_tokenizer",
        pretrain=config["pretrain"],
        train_config=config["train"],
        seed=config["seed"],
        sizes=lambda wc: f"settings {config['pretrain']['tokenizer']}",
    log:
        f"{LOGS}/pretrain/{{dataset}}_tokenizer.log",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: __import__("jetfm.train.launch").train.launch.rule_threads(config, "tokenizer", minimum=2)
    resources:
        mem_mb=4000,
        **__import__("jetfm.train.launch").train.launch.rule_resources(config, "tokenizer", minimum=2),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain.py"


rule pretrain:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        tokenizer=lambda wc: (
            [f"{RESULTS}/pretrain/{wc.dataset}_tokenizer/checkpoint.pt"] if wc.method == "mpm_tok" else []
        ),
    output:
        checkpoint=f"{RESULTS}/pretrain/{{dataset}}_{{method}}/checkpoint.pt",
        history=f"{RESULTS}/pretrain/{{dataset}}_{{method}}/history.csv",
        summary=f"{RESULTS}/pretrain/{{dataset}}_{{method}}/summary.json",
        loss=report(
            f"{RESULTS}/pretrain/{{dataset}}_{{method}}/loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pretraining",
            subcategory="{method}",
        ),
    params:
        out_dir=lambda wc: f"{RESULTS}/pretrain/{wc.dataset}_{wc.method}",
        # Listed so that editing these sections reruns pretraining (Snakemake's params rerun trigger).
        pretrain=config["pretrain"],
        train_config=config["train"],
        seed=config["seed"],
        sizes=lambda wc: (
            f"ParT backbone {config['pretrain']['size']}; {config['pretrain']['train']} on top of the train "
            f"section; {wc.method} settings {config['pretrain'].get(wc.method.replace('mpm_tok', 'mpm'), {})}"
        ),
    log:
        f"{LOGS}/pretrain/{{dataset}}_{{method}}.log",
    wildcard_constraints:
        method="mpm|mpm_tok|rs3l",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: __import__("jetfm.train.launch").train.launch.rule_threads(config, "pretrain")
    resources:
        mem_mb=4000,
        **__import__("jetfm.train.launch").train.launch.rule_resources(config, "pretrain"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain.py"


rule finetune:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        # the pretrained checkpoint the method starts from (none for scratch)
        backbone=lambda wc: (
            []
            if wc.method == "scratch"
            else [f"{RESULTS}/pretrain/{wc.dataset}_{wc.method.removesuffix('-probe')}/checkpoint.pt"]
        ),
    output:
        checkpoint=f"{RESULTS}/finetune/{{dataset}}/{{method}}_{{fraction}}_{{seed}}/checkpoint.pt",
        metrics=f"{RESULTS}/finetune/{{dataset}}/{{method}}_{{fraction}}_{{seed}}/metrics.json",
        history=f"{RESULTS}/finetune/{{dataset}}/{{method}}_{{fraction}}_{{seed}}/history.csv",
    params:
        out_dir=lambda wc: f"{RESULTS}/finetune/{wc.dataset}/{wc.method}_{wc.fraction}_{wc.seed}",
        finetune=config["finetune"],
        backbone_size=config["pretrain"]["size"],
        train_config=config["train"],
        seed=config["seed"],
    log:
        f"{LOGS}/finetune/{{dataset}}/{{method}}_{{fraction}}_{{seed}}.log",
    wildcard_constraints:
        method=r"scratch|(mpm|mpm_tok|rs3l)(-probe)?",
        fraction=r"[0-9.e-]+",
        seed=r"\d+",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: __import__("jetfm.train.launch").train.launch.rule_threads(config, "finetune")
    resources:
        mem_mb=3000,
        **__import__("jetfm.train.launch").train.launch.rule_resources(config, "finetune"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune.py"


rule finetune_efficiency:
    input:
        metrics=expand(
            f"{FINETUNE_DIR}/{{method}}_{{fraction}}_{{seed}}/metrics.json",
            method=FINETUNE_METHODS,
            fraction=FRACTIONS,
            seed=SEED_INDICES,
        ),
    output:
        csv=report(
            f"{RESULTS}/finetune/{{dataset}}/efficiency.csv",
            caption="../report/finetune_efficiency_table.rst",
            category="Summary",
        ),
        json=f"{RESULTS}/finetune/{{dataset}}/efficiency.json",
        figure=report(
            f"{RESULTS}/finetune/{{dataset}}/efficiency.png",
            caption="../report/finetune_efficiency.rst",
            category="Summary",
        ),
    params:
        sizes=lambda wc: (
            f"methods {FINETUNE_METHODS}, labelled fractions {FRACTIONS}, {FINETUNE['seeds']} seeds, "
            f"backbone {config['pretrain']['size']}, fine-tuning {FINETUNE['train']}"
        ),
    log:
        f"{LOGS}/finetune/{{dataset}}/efficiency.log",
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune_efficiency.py"


rule pretrain_headline:
    input:
        efficiency=f"{RESULTS}/finetune/{{dataset}}/efficiency.json",
        train_metrics=expand(f"{RESULTS}/models/{DATASET}_{{model}}/metrics.json", model=TRAIN_MODELS),
        pretrain=expand(f"{PRETRAIN_DIR}_{{method}}/summary.json", method=PRETRAIN_METHODS),
    output:
        headline=report(
            f"{RESULTS}/finetune/{{dataset}}/pretrain_headline.rst",
            caption="../report/pretrain_headline.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/finetune/{{dataset}}/headline.log",
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain_headline.py"


rule pretrain_all:
    input:
        expand(f"{PRETRAIN_DIR}_{{method}}/summary.json", method=PRETRAIN_METHODS),


rule finetune_all:
    input:
        f"{FINETUNE_DIR}/efficiency.csv",
        f"{FINETUNE_DIR}/pretrain_headline.rst",


ALL_TARGETS.extend(rules.finetune_all.input)
