"""Benchmark of the simulation stage against bare Pythia, measured in the same run.

Per class: the full stage (`simulate_shard`: nextBatch + detector + clustering/matching/substructure +
ROOT writing) for `--jets` jets, then bare Pythia `next()` of the same process (same settings, same seed) for
the same number of generated events. Both include Pythia's `init()`. Times are CPU seconds of this process
(`time.process_time`), so other jobs sharing the cores disturb them less than wall time would; each is the
fastest of `--repeats` interleaved runs (identical work each time: same seed).

Prints per class: generated events per accepted jet (selected jets, including those beyond the request),
jets/s/core of the stage (written jets), events/s of the stage and of bare Pythia, and their ratio
(target >= 0.7: clustering + detector + writing cost <= 30 % on top of Pythia).

Usage: .venv/bin/python bench/simulate.py [--jets 200] [--classes QCD Hbb ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from jetfm import CLASSES
from jetfm.config import validate_config
from jetfm.seeds import derive_seed
from jetfm.simulate.processes import make_pythia
from jetfm.simulate.run import simulate_shard


def bare_pythia(cls: str, sim: dict, seed: int, n_events: int) -> float:
    """CPU seconds for init + n_events calls of `next()` (the baseline)."""
    t0 = time.process_time()
    pythia = make_pythia(cls, sim, seed)
    done = 0
    while done < n_events:
        if pythia.next():
            done += 1
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jets", type=int, default=200, help="jets per class for the full stage")
    ap.add_argument("--classes", nargs="+", default=list(CLASSES), choices=CLASSES)
    ap.add_argument("--detector", default="delphes_cms", choices=["delphes_cms", "truth"])
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest of each counts")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    config = validate_config({"dataset": "bench", "seed": 2026, "classes": args.classes,
                              "simulate": {"jets_per_shard": args.jets,
                                           "detector": args.detector}})  # fmt: skip
    sim = config["simulate"]
    rows = []
    print(f"{'class':6} {'ev/jet':>7} {'jets/s':>7} {'stage ev/s':>10} {'pythia ev/s':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for cls in args.classes:
            t_stage = t_bare = float("inf")
            for _ in range(args.repeats):
                t0 = time.process_time()
                counts = simulate_shard(config, cls, 0, Path(tmp) / f"{cls}.root", progress=False)
                t_stage = min(t_stage, time.process_time() - t0)
                n_events = counts["events_generated"]
                t_bare = min(t_bare, bare_pythia(cls, sim, derive_seed(config["seed"], cls, 0), n_events))
            row = {
                "cls": cls, "events": n_events, "jets": counts["jets_written"],
                # Acceptance: events per jet passing the selection (jets beyond the request included).
                "events_per_jet": n_events / max(counts["jets_selected"], 1),
                "jets_per_s": counts["jets_written"] / t_stage, "stage_events_per_s": n_events / t_stage,
                "pythia_events_per_s": n_events / t_bare, "ratio": t_bare / t_stage,
            }  # fmt: skip
            rows.append(row)
            print(f"{cls:6} {row['events_per_jet']:7.2f} {row['jets_per_s']:7.1f} "
                  f"{row['stage_events_per_s']:10.1f} "
                  f"{row['pythia_events_per_s']:11.1f} {row['ratio']:6.2f}", flush=True)  # fmt: skip
    total_stage = sum(r["events"] / r["stage_events_per_s"] for r in rows)
    total_bare = sum(r["events"] / r["pythia_events_per_s"] for r in rows)
    print(f"all classes: ratio {total_bare / total_stage:.2f} (CPU time of bare Pythia / of the stage); "
          f"{sum(r['jets'] for r in rows) / total_stage:.1f} jets/s/core")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
