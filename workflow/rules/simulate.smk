# simulate stage: Pythia 8 jets in the JetClass layout, one job per class x shard
# (logic in src/jetfm/simulate; `jetfm simulate --cls C --shard N --out F` runs the same function).
# Seeds derive from (seed, class, shard), so jobs run on any node in any order.
# `simulate.enabled: false` (e.g. config/jetclass-public.yaml: the public JetClass files only): no file is
# asked for, so neither this stage nor its plot is in the DAG (validation turns the views off too).
from jetfm import paths

SIM_FILES = paths.sim_files(config) if config["simulate"]["enabled"] else []
SIM_PLOTS = paths.plots_dir(DATASET)


rule simulate:
    output:
        paths.sim_file("{dataset}", "{cls}", "{shard}"),
    log:
        paths.log_file("simulate", "{dataset}/{cls}/{shard}"),
    params:
        # every key the shard's content depends on (the number of shards only adds jobs)
        settings=config_params("seed", "simulate", exclude=("simulate.shards", "simulate.enabled")),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../../scripts/simulate.py"


rule simulate_plot:
    input:
        SIM_FILES,
    output:
        figure=report(
            f"{SIM_PLOTS}/sim_validation.png",
            caption="../report/simulate_validation.rst",
            category="Simulation",
        ),
        summary=f"{SIM_PLOTS}/sim_validation.json",
    log:
        paths.log_file("simulate", f"{DATASET}_plot"),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../../scripts/simulate_plot.py"


rule simulate_all:
    input:
        SIM_FILES,
        rules.simulate_plot.output if SIM_FILES else [],


ALL_TARGETS.extend(rules.simulate_all.input)
