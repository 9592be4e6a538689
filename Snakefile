# jetfm: simulation -> preprocessing -> (pre)training -> scaling -> FPGA.
# Each stage is a rule family in workflow/rules/<stage>.smk with a <stage>_all target; logic lives in src/jetfm.
from snakemake.utils import min_version

from jetfm import CLASSES

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    cls="|".join(CLASSES),
    shard=r"\d+",
    split="train|val|test",
    dataset=r"[A-Za-z0-9_.-]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/resimulate.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/scaling.smk"

include: "workflow/rules/robustness.smk"

include: "workflow/rules/images.smk"
include: "workflow/rules/pretrain.smk"

include: "workflow/rules/fpga.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
