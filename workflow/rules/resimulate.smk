# resimulate stage: K re-simulation views (RS3L) of the same hard events, one job per class x shard
# (logic in src/jetfm/simulate/resim/run.py; `jetfm resimulate` runs the same function without Snakemake).
# Independent of the nominal sample: own seeds (seed, "resim", class, shard, view) and event-id stream.
RESIM_FILES = sim_files("views") if config["resimulate"]["enabled"] else []
RESIM_PLOTS = paths.plots_dir(DATASET)


rule resimulate:
    output:
        paths.sim_file("{dataset}", "{cls}", "{shard}", views=True),
    log:
        paths.log_file("resimulate", "{dataset}/{cls}/{shard}"),
    params:
        # the views reuse the simulation's generator, detector and jet settings, not its jet count
        settings=config_params(
            "seed",
            "simulate",
            "resimulate",
            exclude=(
                "simulate.shards", "simulate.jets_per_shard", "simulate.enabled",
                "resimulate.shards", "resimulate.enabled",
            ),
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
            f"{RESIM_PLOTS}/resim_spread.png",
            caption="../report/resim_spread.rst",
            category="Re-simulation",
        ),
        summary=f"{RESIM_PLOTS}/resim_spread.json",
    log:
        paths.log_file("resimulate", f"{DATASET}_plot"),
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
