"""Benchmark: re-simulation views per second per core, as ratios to baselines measured in the same run.

    .venv/bin/python bench/resimulate.py [--cls Tbqq] [--events 40] [--repeats 3]

Baselines (one core, same saved parton-level events):
  bare          restore the event into a Pythia and `forceHadronLevel(False)`, nothing read out
                (on the engine's own instance, same settings: the apples-to-apples cost of hadronisation);
  bare-gen      the same on the generator instance (Pythia's default event check on).
Measured:
  engine        Rehadronizer.run: restore + forceHadronLevel + vectorised read-out (nextBatch) of every view;
  python-read   bare-gen + reading the final state particle by particle (particles.final_state_from_event):
                the approach the engine avoids;
  view          engine + final state + detector response + anti-kT/soft drop/N-subjettiness + truth match;
  reshower      Reshowerer.run (ISR/FSR/MPI + hadronisation of saved hard processes), against a bare
                Pythia `next()` of a complete new event of the same class.
  stage         resimulate_shard end to end (generation, K views, losses, writing): views written per second
                and views processed (generated events x K) per second.
Methods are interleaved and repeated; the median is reported (the machine is shared, timings are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pythia8mc

from jetfm.config import load_config
from jetfm.simulate.particles import final_state_from_event
from jetfm.simulate.resim import views as resim_views
from jetfm.simulate.resim.engine import Rehadronizer, Reshowerer, hard_process
from jetfm.simulate.resim.run import GENERATOR_STOPS, resimulate_shard


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--cls", default="Tbqq")
    parser.add_argument("--events", type=int, default=40, help="saved events per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    sim_cfg = config["simulate"]
    settings = resim_views.class_settings(args.cls, sim_cfg, 0)

    gen = resim_views.make_generator(args.cls, sim_cfg, 101, GENERATOR_STOPS["rehadronize"], 0)
    saved = []
    while len(saved) < args.events:
        if gen.next():
            saved.append(pythia8mc.Event(gen.event))
    engine = Rehadronizer(settings, 202)
    rng = np.random.default_rng(0)
    n = len(saved)
    truth = resim_views.truth_objects(args.cls, engine.run(saved)[0])

    def bare() -> None:
        for ev in saved:
            engine.force_hadron_level(ev)

    def bare_gen() -> None:
        for ev in saved:
            gen.event.assign(ev)
            gen.forceHadronLevel(False)

    def python_read() -> None:
        for ev in saved:
            gen.event.assign(ev)
            gen.forceHadronLevel(False)
            final_state_from_event(gen.event)

    def run_engine() -> None:
        engine.run(saved)

    def run_view() -> None:
        events, ok = engine.run(saved)
        resim_views.view_jets(args.cls, sim_cfg, events, ok, rng, truth, 0.2)

    full_gen = resim_views.make_generator(args.cls, sim_cfg, 303, (), 0)
    hard_gen = resim_views.make_generator(args.cls, sim_cfg, 404, GENERATOR_STOPS["reshower"], 0)
    hard = []
    while len(hard) < n:
        if hard_gen.next():
            hard.append(hard_process(hard_gen))
    shower = Reshowerer(settings, 505, e_cm=float(sim_cfg["sqrt_s_gev"]))

    def full_event() -> None:
        for _ in range(n):
            full_gen.next()

    def reshower() -> None:
        shower.run(hard)

    methods = {"bare": bare, "bare-gen": bare_gen, "python-read": python_read, "engine": run_engine,
               "view": run_view, "full-event": full_event, "reshower": reshower}  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in methods}
    run_view()  # warm-up (fastjet banner, first-call overheads)
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(_time(fn, n))
    med = {m: statistics.median(t) for m, t in times.items()}

    print(f"class {args.cls}, {n} saved events x {args.repeats} repeats (medians, one core)")
    for m in methods:
        print(f"  {m:<11} {1e3 * med[m]:8.3f} ms/view  {1.0 / med[m]:8.1f} views/s")
    print("ratios (views/s relative to the baseline; target >= 0.5 for rehadronize):")
    print(f"  engine / bare          {med['bare'] / med['engine']:.2f}")
    print(f"  engine / bare-gen      {med['bare-gen'] / med['engine']:.2f}")
    print(f"  python-read / bare-gen {med['bare-gen'] / med['python-read']:.2f}   (Python read-out)")
    print(f"  view   / bare          {med['bare'] / med['view']:.2f}   (incl. detector + jets + matching)")
    print(f"  view   / bare-gen      {med['bare-gen'] / med['view']:.2f}")
    print(f"  reshower / full-event  {med['full-event'] / med['reshower']:.2f}   (re-shower vs a new event)")

    config["resimulate"]["events_per_shard"] = args.events
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        counts = resimulate_shard(config, args.cls, 0, Path(tmp) / "bench.views.root", progress=False)
        wall = time.perf_counter() - t0
    processed = counts["events_generated"] * counts["views"]
    print(
        f"stage (rehadronize, K={counts['views']}): {counts['jets_written'] / wall:.1f} views written/s, "
        f"{processed / wall:.1f} views processed/s ({counts['events_generated']} events generated for "
        f"{counts['events_written']} kept; {wall:.1f} s incl. Pythia init)"
    )


if __name__ == "__main__":
    main()
