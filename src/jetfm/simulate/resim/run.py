"""Re-simulation views (RS3L): K physically different realisations of the same hard-scattering event.

One shard = one class: generate events up to the point of intervention, save them, rerun what follows K times
(`engine`), push every view through the *same* detector response and jet building as the nominal sample
(`views`), keep the jet matched to the same truth object in every view, and write all K views of each
kept event to one `*.views.root` file (JetClass branches + `event_id` + `view`).

Modes (config `resimulate.mode`):
  rehadronize  the parton-level event (hard process, ISR/FSR, MPI, beam remnants, colour reconnection) is
               kept; hadronisation and hadron decays are rerun with fresh random numbers (and optional
               per-view fragmentation settings).
  reshower     the hard process and its resonance decays are kept; ISR, FSR, MPI and hadronisation are rerun
               (optionally with per-view shower settings, e.g. TimeShower:alphaSvalue).

Event policy (each kept event has exactly K views):
  1. every view must have a jet matched to the same truth object (the nominal matching: object and all its
     visible decay products within R) inside the nominal window widened by `resimulate.window_margin`;
  2. the event is selected on the view-averaged jet: mean pT in [jet_pt_min, jet_pt_max], mean |eta| below
     jet_abs_eta_max (so individual views may lie up to the margin outside the nominal window).
Why not the nominal window on every view: views are independently hadronised *and* detector-smeared, so near
the steep lower pT edge a jet crosses 500 GeV in some view for ~40 % of events (measured, Wqq, Delphes-card
response); requiring all K views inside would deplete low-pT jets. Selecting on the view average is symmetric
in the views and keeps the edge unbiased. Events failing (1) are dropped as a whole and counted per view
(`counts.views_lost_match`, `counts.events_dropped_lost_view`); nothing disappears silently.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pythia8mc
from tqdm import tqdm

from jetfm import CLASSES
from jetfm.ids import RESIM_STREAM, make_event_ids
from jetfm.jetclass import class_index
from jetfm.provenance import make_provenance
from jetfm.seeds import derive_seed
from jetfm.simulate.detector import NOMINAL_DETECTOR, DetectorVariation
from jetfm.simulate.resim import views as resim_views
from jetfm.simulate.resim.engine import Rehadronizer, Reshowerer, hard_process
from jetfm.simulate.resim.settings import ResimSpec, resim_spec
from jetfm.stale import prepare_output

log = logging.getLogger(__name__)

# What the generator stops short of, per mode (the engine reruns the rest).
GENERATOR_STOPS = {
    "rehadronize": ("HadronLevel:all = off",),
    "reshower": ("PartonLevel:all = off", "HadronLevel:all = off"),
}


def view_seeds(
    base_seed: int,
    cls: str,
    shard: int,
    views: int,
    tag: str = "resim",
    seed_views: Sequence[int] | None = None,
) -> dict[str, Any]:
    """All seeds of one shard: generator, per-view engine and per-view detector smearing.

    `tag` names the sample: another tag (e.g. the robustness stage's held-out events) draws other events.
    `seed_views[k]` is the view whose random numbers view k reuses (default: its own); views that share them
    and their settings are identical, so a view with one changed setting differs from its partner by the
    change (common random numbers) rather than by a fresh shower as well.
    """
    index = list(range(views)) if seed_views is None else [int(i) for i in seed_views]
    if len(index) != views or not all(0 <= i < views for i in index):
        raise ValueError(f"seed_views must name one of the {views} views per view, got {seed_views!r}")
    return {
        "generator": derive_seed(base_seed, tag, cls, shard),
        "views": [derive_seed(base_seed, tag, cls, shard, i) for i in index],
        "detector": [derive_seed(base_seed, f"{tag}-detector", cls, shard, i) for i in index],
    }


def _check_inputs(config: dict[str, Any], cls: str, shard: int) -> tuple[ResimSpec, dict[str, Any]]:
    class_index(cls)  # clear error for unknown classes
    if not isinstance(shard, int) or shard < 0:
        raise ValueError(f"shard must be a non-negative integer, got {shard!r}")
    section = config.get("resimulate", {})
    if not section.get("enabled", True):
        raise ValueError("resimulate.enabled is false: nothing to do (enable it or drop the views target)")
    spec = resim_spec(section)
    sim_cfg = config["simulate"]
    if not sim_cfg["jet_pt_min"] < sim_cfg["jet_pt_max"]:
        raise ValueError(
            f"simulate.jet_pt_min ({sim_cfg['jet_pt_min']}) must be below "
            f"simulate.jet_pt_max ({sim_cfg['jet_pt_max']})"
        )
    return spec, sim_cfg


def _engines(
    spec: ResimSpec, cls: str, shard: int, sim_cfg: dict[str, Any], seeds: dict[str, Any]
) -> list[Any]:
    base = resim_views.class_settings(cls, sim_cfg, shard)
    engines: list[Any] = []
    for k in range(spec.views):
        settings = [*base, *spec.settings_for_view(k)]
        if spec.mode == "rehadronize":
            engines.append(Rehadronizer(settings, seeds["views"][k]))
        else:
            engines.append(Reshowerer(settings, seeds["views"][k], e_cm=float(sim_cfg["sqrt_s_gev"])))
    return engines


def resimulate_shard(
    config: dict[str, Any],
    cls: str,
    shard: int,
    out: str | Path,
    progress: bool = True,
    *,
    stream: int = RESIM_STREAM,
    seed_tag: str = "resim",
    view_detectors: Sequence[DetectorVariation] = (),
    seed_views: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write `out` (*.views.root) with K views of `resimulate.events_per_shard` hard events; return counts.

    `stream` (event ids) and `seed_tag` (seeds) name the sample, so another caller (the robustness stage)
    gets events that can never coincide with these; `view_detectors[k]` shifts view k's detector response
    (views beyond the list: nominal detector); `seed_views` lets views share random numbers (`view_seeds`).
    """
    t0 = time.perf_counter()
    spec, sim_cfg = _check_inputs(config, cls, shard)
    prepare_output(out)

    if len(view_detectors) > spec.views:
        raise ValueError(f"{len(view_detectors)} per-view detector variations for {spec.views} views")
    detectors = [*view_detectors, *[NOMINAL_DETECTOR] * (spec.views - len(view_detectors))]
    n_target = int(config["resimulate"]["events_per_shard"])
    max_events = max(n_target, math.ceil(float(sim_cfg["max_events_per_jet"]) * n_target))
    batch = max(1, min(int(sim_cfg["batch_size"]), 2 * n_target))
    seeds = view_seeds(int(config["seed"]), cls, shard, spec.views, seed_tag, seed_views)
    margin = float(config["resimulate"].get("window_margin", 0.2))

    generator = resim_views.make_generator(
        cls, sim_cfg, seeds["generator"], GENERATOR_STOPS[spec.mode], shard
    )
    engines = _engines(spec, cls, shard, sim_cfg, seeds)
    rngs = [np.random.default_rng(s) for s in seeds["detector"]]

    counts: dict[str, Any] = {
        "events_generated": 0, "events_failed_generation": 0, "events_written": 0,
        "events_no_jet_any_view": 0, "events_dropped_lost_view": 0, "events_outside_window": 0,
        "events_beyond_target": 0,
        "views": spec.views, "views_failed_engine": [0] * spec.views, "views_lost_match": [0] * spec.views,
    }  # fmt: skip
    kept: list[list[dict[str, np.ndarray]]] = [[] for _ in range(spec.views)]
    bar = tqdm(total=n_target, desc=f"resim {cls}/{shard:04d}", unit="evt", disable=not progress)
    while counts["events_written"] < n_target and counts["events_generated"] < max_events:
        n = min(batch, max_events - counts["events_generated"])
        saved, failed = _generate(generator, spec.mode, n)
        counts["events_generated"] += n
        counts["events_failed_generation"] += failed
        if not saved:
            continue
        per_view = []
        truth = None
        for k, engine in enumerate(engines):
            events, ok = engine.run(saved)
            counts["views_failed_engine"][k] += int((~ok).sum())
            if spec.mode == "rehadronize" and truth is None and ok.all():
                # Identical parton-level records in every view: identical truth objects, computed once.
                truth = resim_views.truth_objects(cls, events)
            per_view.append(
                resim_views.view_jets(cls, sim_cfg, events, ok, rngs[k], truth, margin, detectors[k])
            )
        chosen, info = resim_views.common_truth_object(per_view, len(saved))
        counts["events_no_jet_any_view"] += info["events_no_jet_any_view"]
        counts["events_dropped_lost_view"] += info["events_dropped_lost_view"]
        for k in range(spec.views):
            counts["views_lost_match"][k] += info["views_lost_match"][k]
        cand = np.flatnonzero(chosen >= 0)
        tables = [resim_views.take_jets(v, cand, chosen[cand]) for v in per_view]
        inside = _mean_in_window(tables, sim_cfg)
        counts["events_outside_window"] += int((~inside).sum())
        room = n_target - counts["events_written"]
        sel = np.flatnonzero(inside)
        counts["events_beyond_target"] += max(0, len(sel) - room)
        sel = sel[:room]
        for k in range(spec.views):
            kept[k].append({b: v[sel] for b, v in tables[k].items()})
        counts["events_written"] += len(sel)
        bar.update(len(sel))
    bar.close()

    n_written = counts["events_written"]
    counts["shortfall"] = n_target - n_written
    counts["jets_written"] = n_written * spec.views
    if counts["shortfall"]:
        log.warning(
            "resimulate %s shard %d: only %d of %d events after %d generated (see provenance counts)",
            cls, shard, n_written, n_target, counts["events_generated"],
        )  # fmt: skip
    jets, event_id, view = _interleave(kept, cls, shard, spec.views, stream)
    provenance = make_provenance(
        "resimulate", config, seeds["generator"], counts, time.perf_counter() - t0,
        cls=cls, shard=shard, mode=spec.mode, seeds=seeds,
        view_settings=[list(spec.settings_for_view(k)) for k in range(spec.views)],
        **({"view_detectors": [asdict(d) for d in detectors]} if view_detectors else {}),
        **({"stream": stream} if stream != RESIM_STREAM else {}),
        class_settings=resim_views.class_settings(cls, sim_cfg, shard),
        event_policy=(
            "all K views have a jet matched to the same truth object within the window widened by "
            f"{margin}; event selected on the view-averaged jet pT and |eta| (nominal window)"
        ),
    )  # fmt: skip
    resim_views.write(out, jets, provenance, event_id, view)
    log.info("resimulate %s shard %d: %s", cls, shard, counts)
    return counts


def _mean_in_window(tables: Sequence[dict[str, Any]], sim_cfg: dict[str, Any]) -> np.ndarray:
    """Nominal window applied to the view-averaged jet pT and |eta| of each candidate event."""
    pt = np.mean([np.asarray(t["jet_pt"], dtype=np.float64) for t in tables], axis=0)
    eta = np.mean([np.abs(np.asarray(t["jet_eta"], dtype=np.float64)) for t in tables], axis=0)
    return (pt > sim_cfg["jet_pt_min"]) & (pt < sim_cfg["jet_pt_max"]) & (eta < sim_cfg["jet_abs_eta_max"])


def _generate(generator: pythia8mc.Pythia, mode: str, n: int) -> tuple[list[Any], int]:
    """n generator calls: saved parton-level events (rehadronize) or hard processes (reshower)."""
    saved: list[Any] = []
    failed = 0
    for _ in range(n):
        if not generator.next():
            failed += 1
            continue
        saved.append(pythia8mc.Event(generator.event) if mode == "rehadronize" else hard_process(generator))
    return saved, failed


def _interleave(
    kept: Sequence[Sequence[dict[str, np.ndarray]]], cls: str, shard: int, views: int, stream: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Order jets event by event, views 0..K-1 within an event; ids shared by the K views of an event."""
    per_view = [resim_views.concat_jets(list(kv)) for kv in kept]
    n = resim_views.n_jets(per_view[0])
    src_view = np.tile(np.arange(views), n)  # event 0: views 0..K-1, event 1: views 0..K-1, ...
    src_index = np.repeat(np.arange(n), views)
    jets = resim_views.gather_views(per_view, src_view, src_index)
    event_id = np.repeat(make_event_ids(stream, CLASSES.index(cls), shard, np.arange(n)), views)
    view = src_view.astype(np.int16)
    return jets, event_id, view
