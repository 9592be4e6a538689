# fpga stage: students distilled from the teacher, pruned + quantised, converted with hls4ml and emulated on
# the test split, synthesised where a vendor tool exists. Logic: src/jetfm/fpga/ (same as `jetfm fpga`).

FPGA = config["fpga"]
FPGA_STUDENTS = FPGA["students"]
# Default teacher: the supervised ParT of this dataset (fpga.teacher names any other training checkpoint).
FPGA_TEACHER = FPGA["teacher"] or f"{RESULTS}/models/{DATASET}_part/checkpoint.pt"


rule fpga_train:
    input:
        teacher=FPGA_TEACHER,
        train=TRAIN_H5["train"],
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        float_checkpoint=f"{RESULTS}/fpga/{{student}}/float/checkpoint.pt",
        float_metrics=f"{RESULTS}/fpga/{{student}}/float/metrics.json",
        checkpoint=f"{RESULTS}/fpga/{{student}}/qat/checkpoint.pt",
        metrics=f"{RESULTS}/fpga/{{student}}/qat/metrics.json",
        loss=report(
            f"{RESULTS}/fpga/{{student}}/qat/loss.png",
            caption="../report/fpga_loss.rst",
            category="FPGA",
            subcategory="{student}",
        ),
    params:
        out_dir=lambda wc: f"{RESULTS}/fpga/{wc.student}",
        # Listed so that editing these sections reruns the job (Snakemake's params rerun trigger).
        fpga=FPGA,
        train_config=config["train"],
        seed=config["seed"],
    log:
        f"{LOGS}/fpga/{{student}}_train.log",
    wildcard_constraints:
        student="jet_mlp|deepsets",
    # One thread: the students' ops are too small for intra-op parallelism; two students train side by side.
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_train.py"


rule fpga_convert:
    input:
        teacher=FPGA_TEACHER,
        checkpoint=rules.fpga_train.output.checkpoint,
        float_checkpoint=rules.fpga_train.output.float_checkpoint,
        test=TRAIN_H5["test"],
    output:
        hls=directory(f"{RESULTS}/fpga/{{student}}/hls"),
        emulation=f"{RESULTS}/fpga/{{student}}/emulation.json",
    params:
        out_dir=lambda wc: f"{RESULTS}/fpga/{wc.student}",
        fpga=FPGA,
        train_config=config["train"],
    log:
        f"{LOGS}/fpga/{{student}}_convert.log",
    wildcard_constraints:
        student="jet_mlp|deepsets",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_convert.py"


rule fpga_synth:
    input:
        checkpoint=rules.fpga_train.output.checkpoint,
        test=TRAIN_H5["test"],
    output:
        synthesis=f"{RESULTS}/fpga/{{student}}/synthesis.json",
    params:
        out_dir=lambda wc: f"{RESULTS}/fpga/{wc.student}",
        fpga=FPGA,
    log:
        f"{LOGS}/fpga/{{student}}_synth.log",
    wildcard_constraints:
        student="jet_mlp|deepsets",
    threads: 1
    resources:
        mem_mb=16000,
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_synth.py"


rule fpga_tables:
    input:
        emulation=expand(f"{RESULTS}/fpga/{{student}}/emulation.json", student=FPGA_STUDENTS),
        synthesis=expand(f"{RESULTS}/fpga/{{student}}/synthesis.json", student=FPGA_STUDENTS),
    output:
        accuracy=report(
            f"{RESULTS}/fpga/accuracy.csv", caption="../report/fpga_accuracy.rst", category="FPGA"
        ),
        synthesis=report(
            f"{RESULTS}/fpga/synthesis.csv", caption="../report/fpga_synthesis.rst", category="FPGA"
        ),
    log:
        f"{LOGS}/fpga/tables.log",
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_tables.py"


rule fpga_all:
    input:
        rules.fpga_tables.output,


ALL_TARGETS.extend([f"{RESULTS}/fpga/accuracy.csv", f"{RESULTS}/fpga/synthesis.csv"])
