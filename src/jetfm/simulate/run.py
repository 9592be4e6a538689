"""One simulation job: Pythia 8 events of one class -> detector -> jets -> one JetClass ROOT shard.

`simulate_shard` is what the Snakemake rule, the CLI (`jetfm simulate`) and the tests call. Hot path per batch
of `batch_size` events: `Pythia.nextBatch` (C++ fills awkward arrays), vectorised detector response,
fastjet's multi-event clustering, awkward matching. Generation stops at the requested number of jets or
after `max_events_per_jet x jets_per_shard` events, whichever comes first; a shortfall is written to the
provenance and logged as a warning, never hidden.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np
from tqdm import tqdm

from jetfm import CLASSES
from jetfm.config import validate_config
from jetfm.ids import NOMINAL_STREAM, make_event_ids
from jetfm.jetclass import class_index
from jetfm.provenance import make_provenance
from jetfm.seeds import derive_seed, validate_pythia_seed
from jetfm.simulate.detector import detector_response
from jetfm.simulate.jets import JetCuts, build_jets
from jetfm.simulate.particles import read_batch
from jetfm.simulate.processes import make_pythia
from jetfm.simulate.writer import JetClassWriter
from jetfm.stale import prepare_output

log = logging.getLogger(__name__)


def check_request(config: Mapping[str, Any], cls: str, shard: int) -> dict[str, Any]:
    """Validate the config against the schema (defaults filled, types and ranges checked there), then the
    checks the schema cannot express; returns the resolved config. Runs before any generation."""
    if cls not in CLASSES:
        raise ValueError(f"simulate: unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
    if not isinstance(shard, int) or shard < 0:
        raise ValueError(f"simulate: shard must be a non-negative integer, got {shard!r}")
    if shard >= 2**20:  # the event-id field (ids.py); seeds and ids do not depend on simulate.shards
        raise ValueError(f"simulate: shard {shard} exceeds the event-id limit of 2**20 shards")
    config = validate_config(dict(config), source=f"for simulate {cls} shard {shard}")
    if cls not in config["classes"]:
        raise ValueError(f"simulate: class {cls!r} is not in config 'classes' {list(config['classes'])}")
    sim = config["simulate"]
    cuts = JetCuts.from_config(sim)
    if not cuts.pt_min < cuts.pt_max:
        raise ValueError(
            f"simulate: jet pT window reversed or empty: jet_pt_min={cuts.pt_min} must be < "
            f"jet_pt_max={cuts.pt_max}"
        )
    if sim["pthat_min_gev"] > cuts.pt_max:
        raise ValueError(
            f"simulate.pthat_min_gev={sim['pthat_min_gev']} is above jet_pt_max={cuts.pt_max}: "
            "no jet could pass"
        )
    try:
        validate_pythia_seed(config["seed"])
    except ValueError as exc:
        raise ValueError(f"config 'seed': {exc}") from None
    return config


def _next_batch_size(batch_size: int, missing: int, totals: Mapping[str, int], max_events: int) -> int:
    """Events for the next batch: enough for the missing jets at the acceptance seen so far (+25 %, at least
    10), at most `batch_size` and never past the bound. Depends only on generated data: deterministic."""
    n = batch_size
    if totals["jets_selected"] > 0:
        per_jet = totals["events_generated"] / totals["jets_selected"]
        n = min(n, max(10, int(np.ceil(1.25 * missing * per_jet))))
    return max(1, min(n, max_events - totals["events_generated"]))


def simulate_shard(
    config: Mapping[str, Any],
    cls: str,
    shard: int,
    out: str | os.PathLike[str],
    progress: bool = True,
) -> dict[str, Any]:
    """Generate `simulate.jets_per_shard` jets of class `cls` into `out`; return the provenance counts.

    Seeds: Pythia gets derive_seed(seed, cls, shard), the detector derive_seed(seed, cls, shard, "detector"),
    so a shard is reproducible on any node and independent of the others. Jets keep generation order;
    `event_id` encodes (nominal stream, class, shard, generated-event index): jets from one event share it,
    so they always land in the same split.
    """
    t0 = time.perf_counter()
    config = check_request(config, cls, shard)
    prepare_output(out)
    sim = config["simulate"]
    cuts = JetCuts.from_config(sim)
    requested = sim["jets_per_shard"]
    batch_size = sim["batch_size"]
    max_events = int(np.ceil(sim["max_events_per_jet"] * requested))
    detector = sim["detector"]
    seed = derive_seed(config["seed"], cls, shard)
    detector_seed = derive_seed(config["seed"], cls, shard, "detector")
    rng = np.random.default_rng(detector_seed)
    pythia = make_pythia(cls, sim, seed, shard=shard)

    totals = {"events_generated": 0, "events_failed": 0, "jets_clustered": 0, "jets_in_window": 0,
              "jets_unmatched": 0, "truth_objects": 0, "jets_selected": 0}  # fmt: skip
    ci = class_index(cls)
    bar = tqdm(total=requested, desc=f"simulate {cls} shard {shard}", unit="jet", disable=not progress)
    with JetClassWriter(out) as writer:
        while writer.n_jets < requested and totals["events_generated"] < max_events:
            n_jets = writer.n_jets
            n = _next_batch_size(batch_size, requested - n_jets, totals, max_events)
            batch = pythia.nextBatch(n, "none")  # failed events come back as None, not silently skipped
            failed = np.asarray(ak.is_none(batch), dtype=bool)
            particles, truth = read_batch(batch, cls)
            cands = detector_response(particles, detector, rng)
            jets, counts = build_jets(cands, truth, cls, cuts)
            event_index = jets.pop("event_index") + totals["events_generated"]
            jets["event_id"] = make_event_ids(NOMINAL_STREAM, ci, shard, event_index)
            for k, v in counts.items():
                totals[k] += v
            totals["events_generated"] += n
            totals["events_failed"] += int(failed.sum())
            new = min(counts["jets_selected"], requested - n_jets)
            writer.append({k: v[:new] for k, v in jets.items()})  # jets beyond the request are dropped
            bar.update(new)
        bar.close()
        writer.flush()
        written = writer.n_written
        totals.update({"jets_requested": requested, "jets_written": written, "shortfall": requested - written,
                       "max_events": max_events})  # fmt: skip
        if written < requested:
            log.warning(
                "simulate %s shard %d: only %d of %d jets after the bound of %d generated events "
                "(simulate.max_events_per_jet=%s); shortfall %d recorded in provenance",
                cls, shard, written, requested, max_events, sim["max_events_per_jet"],
                requested - written,
            )  # fmt: skip
        wall = time.perf_counter() - t0
        writer.provenance = make_provenance(
            "simulate", dict(config), seed, counts=totals, wall_time_s=wall, cls=cls, shard=shard,
            detector_seed=detector_seed,
        )  # fmt: skip
    log.info("simulate %s shard %d: %s (%.1f s)", cls, shard, totals, wall)
    return totals
