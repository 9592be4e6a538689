# simulate stage: Pythia 8 jets in the JetClass layout, one job per class x shard
# (logic in src/jetfm/simulate; `jetfm simulate --cls C --shard N --out F` runs the same function).
# Seeds derive from (seed, class, shard), so jobs run on any node in any order.
SIM_FILES = sim_files("nominal")


rule simulate:
    output:
        f"{RESULTS}/sim/{{dataset}}/{{cls}}/{{shard}}.root",
    log:
        f"{LOGS}/simulate/{{dataset}}/{{cls}}/{{shard}}.log",
    params:
        # every key the shard's content depends on (the number of shards only adds jobs)
        settings=config_params("seed", "simulate", exclude=("simulate.shards",)),
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
            f"{RESULTS}/plots/{DATASET}/sim_validation.png",
            caption="../report/simulate_validation.rst",
            category="Simulation",
        ),
        summary=f"{RESULTS}/plots/{DATASET}/sim_validation.json",
    log:
        f"{LOGS}/simulate/{DATASET}_plot.log",
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
        rules.simulate_plot.output,


ALL_TARGETS.extend(rules.simulate_all.input)
