# fpga stage: students distilled from the teacher, pruned + quantised, converted with hls4ml and emulated on
# the test split, written as pipelined Verilog and simulated with Verilator, synthesised with yosys (an
# open-source estimate) and, when fpga.synthesis.vendor is set, with Vitis/Vivado HLS. Logic: src/jetfm/fpga/
# (same as `jetfm fpga`); every path from jetfm.paths.
from jetfm import paths
from jetfm.fpga import rules as fpga_rules
from jetfm.fpga import transfer as fpga_transfer
from jetfm.train.stage_layout import layout_config

FPGA = config["fpga"]
FPGA_STUDENTS = FPGA["students"]
FPGA_STUDENT_NAMES = fpga_rules.student_pattern(FPGA_STUDENTS)  # any configured name (its kind is validated)
# Default teacher: the supervised ParT of this dataset (fpga.teacher names any other training checkpoint).
FPGA_TEACHER = FPGA["teacher"] or f"{paths.model_dir(DATASET, 'part')}/checkpoint.pt"
FPGA_STUDENT = fpga_rules.STUDENT
# The distillation's transfer set (fpga.transfer): the training shards holding re-simulation views, [] when
# off; asking for views the workflow does not produce stops the planning here, in one line.
try:
    FPGA_TRANSFER = fpga_transfer.view_shards(config, PREPROCESS_GROUPS)
except ValueError as exc:
    raise WorkflowError(str(exc)) from None
fpga_out = fpga_rules.student_out


# What changes a student's outputs: its training (train: section via the phases, fpga sections, seed); the
# conversion also depends on the compression and HLS settings; synthesis on those and the flow settings.
# Neither depends on the students' ranks (fpga.train.gpus/nodes: the global batch is a setting).
FPGA_RANKS = ("fpga.train.gpus", "fpga.train.nodes")
FPGA_TRAIN_SETTINGS = config_params(
    "seed", "train", "fpga", exclude=("fpga.hls", "fpga.synthesis", "fpga.open_flow", "fpga.students",
                                      "train.progress", "train.checkpoint_every", "train.threads", *FPGA_RANKS)
)  # fmt: skip
FPGA_CONVERT_SETTINGS = config_params(
    "seed", "train", "fpga", exclude=("fpga.synthesis", "fpga.students", *FPGA_RANKS)
)
# The students' training job: ranks from train: < fpga.train (CPU processes unless fpga.train.device is cuda).
FPGA_LAYOUT = layout_config(config, "fpga")
FPGA_SYNTH_SETTINGS = config_params("fpga.compress", "fpga.hls", "fpga.synthesis", "fpga.open_flow")


rule fpga_train:
    input:
        teacher=FPGA_TEACHER,
        train=TRAIN_H5["train"],
        transfer=FPGA_TRANSFER,
        val=TRAIN_H5["val"],
        test=TRAIN_H5["test"],
    output:
        float_checkpoint=fpga_out("float/checkpoint.pt"),
        float_metrics=fpga_out("float/metrics.json"),
        checkpoint=fpga_out("qat/checkpoint.pt"),
        metrics=fpga_out("qat/metrics.json"),
        loss=report(
            fpga_out("qat/loss.png"),
            caption="../report/fpga_loss.rst",
            category="FPGA",
            subcategory="{student}",
        ),
    params:
        out_dir=lambda wc: paths.fpga_dir(wc.student),
        settings=FPGA_TRAIN_SETTINGS,
    log:
        paths.log_file("fpga", f"{FPGA_STUDENT}_train"),
    wildcard_constraints:
        student=FPGA_STUDENT_NAMES,
    # One thread per rank: the students' ops are too small for intra-op parallelism; two students train side
    # by side. Ranks: fpga.train.gpus x nodes (jetfm.train.launch via stage_layout), Slurm tasks and the stop
    # signal in the resources.
    threads: launch.rule_threads(FPGA_LAYOUT, "train")
    resources:
        mem_mb=4000,
        **launch.rule_resources(FPGA_LAYOUT, "train"),
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
        hls=directory(fpga_out("hls")),
        emulation=fpga_out("emulation.json"),
    params:
        out_dir=lambda wc: paths.fpga_dir(wc.student),
        settings=FPGA_CONVERT_SETTINGS,
    log:
        paths.log_file("fpga", f"{FPGA_STUDENT}_convert"),
    wildcard_constraints:
        student=FPGA_STUDENT_NAMES,
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
        synthesis=fpga_out("synthesis.json"),
    params:
        out_dir=lambda wc: paths.fpga_dir(wc.student),
        settings=FPGA_SYNTH_SETTINGS,
    log:
        paths.log_file("fpga", f"{FPGA_STUDENT}_synth"),
    wildcard_constraints:
        student=FPGA_STUDENT_NAMES,
    threads: 1
    resources:
        mem_mb=16000,
        slurm_partition=fpga_rules.synth_partition(config),
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_synth.py"


rule fpga_tables:
    input:
        emulation=expand(fpga_out("emulation.json"), student=FPGA_STUDENTS),
        synthesis=expand(fpga_out("synthesis.json"), student=FPGA_STUDENTS),
    output:
        accuracy=report(
            f"{paths.fpga_dir()}/accuracy.csv", caption="../report/fpga_accuracy.rst", category="FPGA"
        ),
        synthesis=report(
            f"{paths.fpga_dir()}/synthesis.csv", caption="../report/fpga_synthesis.rst", category="FPGA"
        ),
        headline=report(
            f"{paths.fpga_dir()}/fpga_headline.rst", caption="../report/fpga_headline.rst", category="Summary"
        ),
        trigger=report(
            f"{paths.fpga_dir()}/trigger.csv", caption="../report/fpga_trigger.rst", category="FPGA"
        ),
        pareto=report(
            f"{paths.fpga_dir()}/pareto.csv", caption="../report/fpga_pareto.rst", category="FPGA"
        ),
        pareto_plot=report(
            f"{paths.fpga_dir()}/pareto.png", caption="../report/fpga_pareto.rst", category="FPGA"
        ),
    log:
        paths.log_file("fpga", "tables"),
    conda:
        "../../envs/fpga.yaml"
    script:
        "../../scripts/fpga_tables.py"


rule fpga_all:
    input:
        rules.fpga_tables.output,


ALL_TARGETS.extend([f"{paths.fpga_dir()}/accuracy.csv", f"{paths.fpga_dir()}/synthesis.csv"])
