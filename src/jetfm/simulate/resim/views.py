"""Views through the nominal chain: the simulation stage's particles -> detector -> jets -> writer.

Nothing here re-implements the nominal sample's physics: final states, truth objects, detector response, jet
building and the ROOT writer are the simulation stage's own functions (`particles`, `detector`, `jets`,
`writer`, `processes`). This module adds what views need on top: which truth object each selected jet
belongs to, the choice of one truth object matched in all K views, and bookkeeping of jet tables.

Truth-object identity across views: truth objects are listed in event-record order, and the record opens
with the same hard process in every view (`rehadronize`: the whole parton-level record is identical), so the
ordinal of an object in its event's list names the same top/W/Z/H (or QCD hard parton) in every view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pythia8mc

from jetfm.jetclass import EVENT_ID_BRANCH, VIEW_BRANCH
from jetfm.simulate.detector import NOMINAL_DETECTOR, DetectorVariation, detector_response
from jetfm.simulate.jets import JetCuts, build_jets, empty_jets
from jetfm.simulate.particles import final_state_from_batch, truth_from_batch
from jetfm.simulate.processes import make_pythia, pythia_settings
from jetfm.simulate.writer import write_jetclass_root

_KEY_STRIDE = 1 << 16  # (event, truth ordinal) packed into one int64


def class_settings(cls: str, sim_cfg: Mapping[str, Any], shard: int) -> list[str]:
    """The nominal sample's Pythia settings of this class and shard (beams, process, decays, user extras)."""
    return pythia_settings(cls, sim_cfg, shard)


def make_generator(
    cls: str, sim_cfg: Mapping[str, Any], seed: int, stops: Sequence[str], shard: int
) -> pythia8mc.Pythia:
    """The nominal generator of this class, stopped before the stage the views rerun."""
    return make_pythia(cls, sim_cfg, seed, extra_settings=tuple(stops), shard=shard)


def relaxed_cuts(sim_cfg: Mapping[str, Any], margin: float) -> JetCuts:
    """The nominal jet window widened by `margin` (fraction of the pT edges; absolute in |eta|)."""
    cuts = JetCuts.from_config(sim_cfg)
    return JetCuts(
        radius=cuts.radius,
        pt_min=cuts.pt_min * (1.0 - margin),
        pt_max=cuts.pt_max * (1.0 + margin),
        abs_eta_max=cuts.abs_eta_max + margin,
    )


@dataclass
class ViewJets:
    """Selected jets of one view of a batch: JetClass branches, batch event index and truth ordinal."""

    jets: dict[str, Any]
    event_index: np.ndarray  # position of each jet's event in the batch
    truth_key: np.ndarray  # ordinal of the jet's truth object in its event (-1: none)
    counts: dict[str, int]


def truth_objects(cls: str, events: ak.Array) -> ak.Array:
    """Truth objects of a batch of views (the simulation stage's definition)."""
    return truth_from_batch(events, cls)


def _truth_ordinal(jets: Mapping[str, Any], event_index: np.ndarray, truth: ak.Array) -> np.ndarray:
    """Which of its event's truth objects each jet's aux_genpart_* record is (-1 if not matched within R)."""
    n = len(event_index)
    key = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return key
    t_counts = ak.to_numpy(ak.num(truth, axis=1))
    offsets = np.concatenate([[0], np.cumsum(t_counts)])
    flat = ak.flatten(truth, axis=1)
    t_eta = ak.to_numpy(flat.eta).astype(np.float32)
    t_phi = ak.to_numpy(flat.phi).astype(np.float32)
    t_pid = ak.to_numpy(flat.pid).astype(np.float32)
    matched = np.asarray(jets["aux_truth_match"]) > 0
    for j in np.flatnonzero(matched):  # one entry per selected jet: a handful per batch
        lo, hi = offsets[event_index[j]], offsets[event_index[j] + 1]
        same = (
            (t_eta[lo:hi] == jets["aux_genpart_eta"][j])
            & (t_phi[lo:hi] == jets["aux_genpart_phi"][j])
            & (t_pid[lo:hi] == jets["aux_genpart_pid"][j])
        )
        hits = np.flatnonzero(same)
        if hits.size:
            key[j] = int(hits[0])
    return key


def view_jets(
    cls: str,
    sim_cfg: Mapping[str, Any],
    events: ak.Array,
    ok: np.ndarray,
    rng: np.random.Generator,
    truth: ak.Array | None = None,
    margin: float = 0.0,
    detector_variation: DetectorVariation = NOMINAL_DETECTOR,
) -> ViewJets:
    """One view of a batch through the nominal detector and jet building; failed events give no jets.

    `truth` may be passed in when it is known to be identical for every view (rehadronize mode). `margin`
    widens the jet window (pT by that fraction, |eta| by that amount): the caller selects events on the
    view-averaged jet instead (see `jetfm.simulate.resim.run`). `detector_variation` shifts this view's
    tracker.
    """
    good = np.flatnonzero(ok)
    if good.size == 0:
        jets = empty_jets()
        jets.pop("event_index")
        return ViewJets(jets, np.zeros(0, np.int64), np.zeros(0, np.int64), {"jets_selected": 0})
    ev = events[good] if good.size != len(events) else events
    if truth is None:
        truth = truth_objects(cls, ev)
    elif good.size != len(events):
        truth = truth[good]
    cands = detector_response(final_state_from_batch(ev), str(sim_cfg["detector"]), rng, detector_variation)
    jets, counts = build_jets(cands, truth, cls, relaxed_cuts(sim_cfg, margin))
    local = np.asarray(jets.pop("event_index"), dtype=np.int64)
    key = _truth_ordinal(jets, local, truth)
    return ViewJets(jets, good[local], key, counts)


def common_truth_object(per_view: Sequence[ViewJets], n_events: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Per event, the first truth object with a selected jet in every view (-1: none), and loss counts.

    Counts: `events_no_jet_any_view` (no selected truth-matched jet in any view: outside acceptance, not
    a lost view), `events_dropped_lost_view` (some view has the object's jet, another lost it) and, per
    view, `views_lost_match[k]` (view k lacks the jet of the object most views have).
    """
    views = len(per_view)
    keys = [
        np.unique(v.event_index[v.truth_key >= 0] * _KEY_STRIDE + v.truth_key[v.truth_key >= 0])
        for v in per_view
    ]
    common = keys[0]
    for k in keys[1:]:
        common = np.intersect1d(common, k)
    chosen = np.full(n_events, -1, dtype=np.int64)
    ev, first = np.unique(common // _KEY_STRIDE, return_index=True)  # smallest ordinal per event
    chosen[ev] = common[first] % _KEY_STRIDE

    everything = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    all_keys, n_views_with = np.unique(everything, return_counts=True)
    events_any = np.unique(all_keys // _KEY_STRIDE)
    lost_events = np.setdiff1d(events_any, ev)
    lost = [0] * views
    for e in lost_events:  # rare: events whose object migrated out of the window in some view
        in_e = (all_keys // _KEY_STRIDE) == e
        best = all_keys[in_e][np.argmax(n_views_with[in_e])]
        for k in range(views):
            if not np.isin(best, keys[k]):
                lost[k] += 1
    info = {
        "events_no_jet_any_view": int(n_events - len(events_any)),
        "events_dropped_lost_view": len(lost_events),
        "views_lost_match": lost,
    }
    return chosen, info


def take_jets(view: ViewJets, events: np.ndarray, keys: np.ndarray) -> dict[str, Any]:
    """The jet of each (event, truth ordinal) pair, in the order given (one row per pair)."""
    row_key = view.event_index * _KEY_STRIDE + view.truth_key
    want = events * _KEY_STRIDE + keys
    order = np.argsort(row_key, kind="stable")
    pos = order[np.searchsorted(row_key[order], want)]
    if not np.array_equal(row_key[pos], want):
        raise RuntimeError("take_jets: a requested (event, truth object) pair has no jet in this view")
    return {b: v[pos] for b, v in view.jets.items()}


def concat_jets(tables: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Concatenate jet tables branch by branch (awkward for jagged branches, numpy otherwise)."""
    if not tables:
        tables = [empty_jets()]
    out: dict[str, Any] = {}
    for b in tables[0]:
        parts = [t[b] for t in tables]
        out[b] = ak.concatenate(parts) if isinstance(parts[0], ak.Array) else np.concatenate(parts)
    out.pop("event_index", None)
    return out


def n_jets(table: Mapping[str, Any]) -> int:
    return len(table["jet_pt"])


def gather_views(
    per_view: Sequence[Mapping[str, Any]], src_view: np.ndarray, src_index: np.ndarray
) -> dict[str, Any]:
    """Rows (view, index) from K equally long per-view tables, in the order given."""
    n = n_jets(per_view[0])
    flat = concat_jets(per_view)
    pick = src_view.astype(np.int64) * n + src_index.astype(np.int64)
    return {b: v[pick] for b, v in flat.items()}


def write(
    out: str | Path,
    jets: dict[str, Any],
    provenance: Mapping[str, Any],
    event_id: np.ndarray,
    view: np.ndarray,
) -> None:
    """The views file: the nominal writer plus the `view` branch (int16)."""
    table = dict(jets)
    table[EVENT_ID_BRANCH] = event_id.astype(np.uint64)
    write_jetclass_root(out, table, provenance, {VIEW_BRANCH: view.astype(np.int16)})
