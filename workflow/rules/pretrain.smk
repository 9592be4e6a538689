# pretrain and finetune stages: self-supervised pretraining of the ParT backbone (masked particles, RS3L
# contrastive; a VQ-VAE tokenizer first for token targets), its export with a model card, fine-tuning vs
# scratch on labelled fractions under the comparison protocol (docs/foundation-model.md: best-validation
# weights, a labelled subset per seed, paired gains, a validation sweep with the same budget for every arm, a
# compute-matched scratch arm, >= 1 pretraining seed per method), the data-efficiency table and the report's
# headline. Logic: src/jetfm/pretrain/, src/jetfm/finetune/ (same functions as `jetfm pretrain` /
# `jetfm finetune` / `jetfm export`). Every path comes from jetfm.paths (and finetune/protocol.py for the
# sweep's); rerun triggers are one `settings=config_params(...)` param per rule.
from jetfm import paths
from jetfm.finetune import protocol
from jetfm.pretrain.variants import parse_variant

PRETRAIN = config["pretrain"]
FINETUNE = config["finetune"]
RUN_SET = paths.run_set(config)  # dataset, or dataset-<study> for a study preset
PRETRAIN_LABELS = protocol.pretrain_labels(config, seeds=True)  # method x unlabelled size x seed
FINETUNE_METHODS = protocol.finetune_methods(config)
FRACTIONS = [f"{f:g}" for f in FINETUNE["fractions"]]
SEED_INDICES = [str(i) for i in range(FINETUNE["seeds"])]
SWEEP_GRID = protocol.sweep_grid(config)
SWEPT = sorted({protocol.swept(config, m) for m in FINETUNE_METHODS} - {None})
# what a pretraining run depends on (`pretrain.train` etc. sit on top of the train section)
PRETRAIN_SETTINGS = ("seed", "train", "pretrain")
FINETUNE_SETTINGS = ("seed", "train", "pretrain.size", "finetune")
NOT_OUTPUT = tuple(f"train.{k}" for k in TRAIN_NOT_OUTPUT)  # the bar, checkpoint cadence, CPU threads
# which runs exist, not what one run computes: adding a fraction, a seed or the probes reruns no finished run
NOT_A_RUN = ("finetune.fractions", "finetune.seeds", "finetune.modes")
METHOD_RE = r"(mpm|mpm_tok|rs3l)(-u[0-9.]+)?(-s\d+)?"
ARM_RE = r"scratch|scratch-matched|(mpm|mpm_tok|rs3l)(-u[0-9.]+)?(-probe)?"


rule tokenizer:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        checkpoint=f"{paths.pretrain_dir('{dataset}', 'tokenizer')}/checkpoint.pt",
        summary=f"{paths.pretrain_dir('{dataset}', 'tokenizer')}/summary.json",
        loss=report(
            f"{paths.pretrain_dir('{dataset}', 'tokenizer')}/loss.png",
            caption="../report/pretrain_tokenizer.rst",
            category="Pretraining",
            subcategory="tokenizer",
        ),
    params:
        out_dir=lambda wc: paths.pretrain_dir(wc.dataset, "tokenizer"),
        settings=config_params(*PRETRAIN_SETTINGS, exclude=NOT_OUTPUT),
    log:
        paths.log_file("pretrain", "{dataset}_tokenizer"),
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: launch.rule_threads(config, "tokenizer", minimum=2)
    resources:
        mem_mb=4000,
        **launch.rule_resources(config, "tokenizer", minimum=2),
    retries: training_retries("tokenizer")  # + the resumed jobs of a walltime chain (slurm: in the config)
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
            [f"{paths.pretrain_dir(wc.dataset, 'tokenizer')}/checkpoint.pt"]
            if parse_variant(wc.method).method == "mpm_tok"
            else []
        ),
    output:
        checkpoint=f"{paths.pretrain_dir('{dataset}', '{method}')}/checkpoint.pt",
        history=f"{paths.pretrain_dir('{dataset}', '{method}')}/history.csv",
        summary=f"{paths.pretrain_dir('{dataset}', '{method}')}/summary.json",
        loss=report(
            f"{paths.pretrain_dir('{dataset}', '{method}')}/loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pretraining",
            subcategory="{method}",
        ),
    params:
        out_dir=lambda wc: paths.pretrain_dir(wc.dataset, wc.method),
        settings=config_params(*PRETRAIN_SETTINGS, exclude=NOT_OUTPUT),
    log:
        paths.log_file("pretrain", "{dataset}_{method}"),
    wildcard_constraints:
        method=METHOD_RE,
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: launch.rule_threads(config, "pretrain")
    resources:
        mem_mb=4000,
        **launch.rule_resources(config, "pretrain"),
    retries: training_retries("pretrain")  # + the resumed jobs of a walltime chain (slurm: in the config)
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain.py"


rule pretrain_export:
    input:
        checkpoint=f"{paths.pretrain_dir('{dataset}', '{method}')}/checkpoint.pt",
        summary=f"{paths.pretrain_dir('{dataset}', '{method}')}/summary.json",
        train=TRAIN_H5["train"],
    output:
        backbone=f"{paths.pretrain_dir('{dataset}', '{method}')}/export/backbone.pt",
        card=f"{paths.pretrain_dir('{dataset}', '{method}')}/export/model_card.json",
        card_md=report(
            f"{paths.pretrain_dir('{dataset}', '{method}')}/export/model_card.md",
            caption="../report/pretrain_model_card.rst",
            category="Pretraining",
            subcategory="{method}",
        ),
    log:
        paths.log_file("pretrain", "{dataset}_{method}_export"),
    wildcard_constraints:
        method=METHOD_RE,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain_export.py"


rule finetune_sweep:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        backbone=lambda wc: protocol.backbone_checkpoints(config, wc.dataset, wc.method, 0),
    output:
        metrics=f"{protocol.sweep_run_dir('{dataset}', '{method}', '{fraction}', '{point}')}/metrics.json",
    params:
        out_dir=lambda wc: protocol.sweep_run_dir(wc.dataset, wc.method, wc.fraction, wc.point),
        hparams=lambda wc: SWEEP_GRID[int(wc.point)],
        settings=config_params(*FINETUNE_SETTINGS, exclude=NOT_OUTPUT + NOT_A_RUN),
    log:
        paths.log_file("finetune", "{dataset}/sweep/{method}_{fraction}_p{point}"),
    wildcard_constraints:
        method=ARM_RE,
        fraction=r"[0-9.e-]+",
        point=r"\d+",
    # the ranks of a fine-tuning run (finetune.train.gpus x nodes: jetfm.train.launch), as in `finetune`
    threads: launch.rule_threads(config, "finetune")
    resources:
        mem_mb=3000,
        **launch.rule_resources(config, "finetune"),
    retries: training_retries("finetune")
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune.py"


rule finetune_sweep_choose:
    input:
        metrics=lambda wc: [
            f"{protocol.sweep_run_dir(wc.dataset, wc.method, wc.fraction, i)}/metrics.json"
            for i in range(len(SWEEP_GRID))
        ],
    output:
        choice=protocol.choice_path("{dataset}", "{method}", "{fraction}"),
    params:
        grid=SWEEP_GRID,
    log:
        paths.log_file("finetune", "{dataset}/sweep/{method}_{fraction}"),
    wildcard_constraints:
        method=ARM_RE,
        fraction=r"[0-9.e-]+",
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune_sweep_choose.py"


rule finetune:
    input:
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
        # the pretrained checkpoint the arm starts from (none for the scratch arms)
        backbone=lambda wc: protocol.backbone_checkpoints(config, wc.dataset, wc.method, int(wc.seed)),
        # the validation sweep's choice for this arm and fraction (read by run_finetuning)
        hparams=lambda wc: protocol.hparams_inputs(config, wc.dataset, wc.method, wc.fraction),
    output:
        checkpoint=f"{paths.finetune_run_dir('{dataset}', '{method}', '{fraction}', '{seed}')}/checkpoint.pt",
        metrics=f"{paths.finetune_run_dir('{dataset}', '{method}', '{fraction}', '{seed}')}/metrics.json",
        history=f"{paths.finetune_run_dir('{dataset}', '{method}', '{fraction}', '{seed}')}/history.csv",
    params:
        out_dir=lambda wc: paths.finetune_run_dir(wc.dataset, wc.method, wc.fraction, wc.seed),
        settings=config_params(*FINETUNE_SETTINGS, exclude=NOT_OUTPUT + NOT_A_RUN),
    log:
        paths.log_file("finetune", "{dataset}/{method}_{fraction}_{seed}"),
    wildcard_constraints:
        method=ARM_RE,
        fraction=r"[0-9.e-]+",
        seed=r"\d+",
    # ranks of the job (train.gpus x train.nodes, per stage: jetfm.train.launch): CPUs here, Slurm tasks,
    # GPUs and the stop signal in its resources
    threads: launch.rule_threads(config, "finetune")
    resources:
        mem_mb=3000,
        **launch.rule_resources(config, "finetune"),
    retries: training_retries("finetune")  # + the resumed jobs of a walltime chain (slurm: in the config)
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune.py"


rule finetune_efficiency:
    input:
        metrics=lambda wc: expand(
            f"{paths.finetune_run_dir(wc.dataset, '{method}', '{fraction}', '{seed}')}/metrics.json",
            method=FINETUNE_METHODS,
            fraction=FRACTIONS,
            seed=SEED_INDICES,
        ),
    output:
        csv=report(
            f"{paths.finetune_dir('{dataset}')}/efficiency.csv",
            caption="../report/finetune_efficiency_table.rst",
            category="Summary",
        ),
        json=f"{paths.finetune_dir('{dataset}')}/efficiency.json",
        table=f"{paths.finetune_dir('{dataset}')}/protocol_table.md",
        figure=report(
            f"{paths.finetune_dir('{dataset}')}/efficiency.png",
            caption="../report/finetune_efficiency.rst",
            category="Summary",
        ),
    params:
        # held-out-class study: the classes pretraining never saw get their own test accuracy
        heldout=[c for c in config["classes"] if PRETRAIN["classes"] and c not in PRETRAIN["classes"]],
        settings=config_params("finetune", "pretrain.size", "pretrain.methods", "pretrain.seeds"),
    log:
        paths.log_file("finetune", "{dataset}/efficiency"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/finetune_efficiency.py"


rule pretrain_headline:
    input:
        efficiency=f"{paths.finetune_dir('{dataset}')}/efficiency.json",
        train_metrics=expand(f"{paths.model_dir(DATASET, '{model}')}/metrics.json", model=TRAIN_MODELS),
        pretrain=lambda wc: [f"{paths.pretrain_dir(wc.dataset, m)}/summary.json" for m in PRETRAIN_LABELS],
    output:
        headline=report(
            f"{paths.finetune_dir('{dataset}')}/pretrain_headline.rst",
            caption="../report/pretrain_headline.rst",
            category="Summary",
        ),
    log:
        paths.log_file("finetune", "{dataset}/headline"),
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/pretrain_headline.py"


rule pretrain_all:
    input:
        [f"{paths.pretrain_dir(RUN_SET, m)}/summary.json" for m in PRETRAIN_LABELS],
        [f"{paths.pretrain_dir(RUN_SET, m)}/export/model_card.json" for m in PRETRAIN_LABELS],


rule finetune_sweep_all:
    input:
        [protocol.choice_path(RUN_SET, m, f) for m in SWEPT for f in FRACTIONS],


rule finetune_all:
    input:
        f"{paths.finetune_dir(RUN_SET)}/efficiency.csv",
        f"{paths.finetune_dir(RUN_SET)}/pretrain_headline.rst",


ALL_TARGETS.extend(rules.finetune_all.input)
# each pretrained backbone exported with its model card (jetfm export): what a user takes elsewhere
ALL_TARGETS.extend(rules.pretrain_all.input)
