# resimulate stage: K re-simulation views (RS3L) of the same hard events, one job per class x shard
# (logic in src/jetfm/simulate/resim/run.py; `jetfm resimulate` runs the same function without Snakemake).
# Independent of the nominal sample: own seeds (seed, "resim", class, shard, view) and event-id stream.
RESIM_FILES = sim_files("views") if config["resimulate"]["enabled"] else []


rule resimulate:
    output:
        f"{RESULTS}/sim/{{dataset}}/{{cls}}/{{shard}}.views.root",
    log:
        f"{LOGS}/resimulate/{{dataset}}/{{cls}}/{{shard}}.log",
    params:
        # the views reuse the simulation's generator, detector and jet settings, not its jet count
        settings=config_params(
            "seed",
            "simulate",
            "resimulate",
            exclude=("simulate.shards", "simulate.jets_per_shard", "resimulate.shards", "resimulate.enabled"),
        ),
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../../scripts/resimulate.py"


rule resimulate_plot:
    input:
        RESIM_FILES,
    output:
        figure=report(
            f"{RESULTS}/plots/{DATASET}/resim_spread.png",
            caption="../report/resim_spread.rst",
            category="Re-simulation",
        ),
        summary=f"{RESULTS}/plots/{DATASET}/resim_spread.json",
    log:
        f"{LOGS}/resimulate/{DATASET}_plot.log",
    conda:
        "../../envs/sim.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../../scripts/resimulate_plot.py"


rule resimulate_all:
    input:
        RESIM_FILES,
        rules.resimulate_plot.output if RESIM_FILES else [],


ALL_TARGETS.extend(rules.resimulate_all.input)
