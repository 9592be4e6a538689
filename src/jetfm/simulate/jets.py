"""Jets in the JetClass recipe: anti-kT clustering, window, truth matching, soft drop, N-subjettiness.

`build_jets` takes a batch of detector-level candidates (`jetfm.simulate.detector`) and truth objects
(`jetfm.simulate.particles`) and returns per-jet JetClass branches (numpy for flat branches, awkward for the
pT-sorted particle branches) plus counts of what was dropped and why. Everything runs over the whole batch
at once (fastjet's multi-event interface, awkward broadcasting); no Python loop over jets or particles.

Recipe (Qu, Li, Qian 2022): anti-kT R = 0.8 on all candidates; pT window and |eta| cut; a signal jet needs
its truth object AND all of the object's visible decay products within Delta R < R (each object tags at most
one jet, the closest); QCD jets are all jets in the window, with the nearest hard parton as aux truth. Soft
drop (beta = 0, z_cut = 0.1, R0 = 0.8) on the C/A reclustered constituents; N-subjettiness tau_1..tau_4 with
the normalised measure (beta = 1, R0 = 0.8) and one-pass kT axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import fastjet
import numpy as np

from jetfm import CLASSES
from jetfm.jetclass import AUX_BRANCHES, JET_BRANCHES, LABEL_BRANCHES, LABEL_DTYPES, PARTICLE_BRANCHES

# Reclustering radius for soft drop: large enough that exclusive C/A merges the whole jet, never the beam.
_RECLUSTER_R = 10.0


@dataclass(frozen=True)
class JetCuts:
    """The jet definition and selection of the `simulate:` config."""

    radius: float = 0.8
    pt_min: float = 500.0
    pt_max: float = 1000.0
    abs_eta_max: float = 2.0

    @classmethod
    def from_config(cls, sim_cfg: Mapping[str, Any]) -> JetCuts:
        return cls(
            radius=float(sim_cfg.get("jet_radius", 0.8)),
            pt_min=float(sim_cfg.get("jet_pt_min", 500.0)),
            pt_max=float(sim_cfg.get("jet_pt_max", 1000.0)),
            abs_eta_max=float(sim_cfg.get("jet_abs_eta_max", 2.0)),
        )


def _delta_phi(a: Any, b: Any) -> Any:
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _four_vectors(cands: ak.Array) -> ak.Array:
    return ak.zip({"px": cands.px, "py": cands.py, "pz": cands.pz, "E": cands.energy})


def _kin(px: Any, py: Any, pz: Any) -> tuple[Any, Any, Any]:
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.maximum(pt, 1e-12)), np.arctan2(py, px)


def _match(
    jet_eta: ak.Array, jet_phi: ak.Array, truth: ak.Array, radius: float, require_products: bool
) -> tuple[ak.Array, ak.Array]:
    """Per jet: index of its truth object (-1 if none) and Delta R to it; each object tags at most one jet."""
    pairs = ak.cartesian({"j": ak.zip({"eta": jet_eta, "phi": jet_phi}), "t": truth}, axis=1, nested=True)
    dr = np.hypot(pairs.j.eta - pairs.t.eta, _delta_phi(pairs.j.phi, pairs.t.phi))
    ok = dr < radius
    if require_products:
        dr_prod = np.hypot(pairs.j.eta - pairs.t.prod_eta, _delta_phi(pairs.j.phi, pairs.t.prod_phi))
        ok = ok & ak.all(dr_prod < radius, axis=-1)
    # Closest acceptable object per jet.
    dr_ok = ak.where(ok, dr, np.inf)
    best = ak.argmin(dr_ok, axis=-1, keepdims=True)
    best_dr = ak.fill_none(ak.firsts(dr_ok[best], axis=-1), np.inf)
    best_idx = ak.fill_none(ak.firsts(best, axis=-1), -1)
    best_idx = ak.where(np.isfinite(best_dr), best_idx, -1)
    # An object claimed by several jets keeps only the closest jet (rare: needs two jets within R of it).
    counts = ak.to_numpy(ak.num(best_idx, axis=1))
    idx = ak.to_numpy(ak.flatten(best_idx)).copy()
    dr_flat = ak.to_numpy(ak.flatten(best_dr))
    ev = np.repeat(np.arange(len(counts)), counts)
    claimed = np.flatnonzero(idx >= 0)
    if claimed.size:
        order = claimed[np.lexsort((dr_flat[claimed], idx[claimed], ev[claimed]))]
        key = np.stack([ev[order], idx[order]], axis=1)
        dup = np.zeros(order.size, dtype=bool)
        dup[1:] = np.all(key[1:] == key[:-1], axis=1)
        idx[order[dup]] = -1
    return ak.unflatten(idx, counts), ak.unflatten(np.where(idx >= 0, dr_flat, np.inf), counts)


def _groomed_and_taus(constituents: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Soft-drop mass and tau_1..tau_4 of each jet, treating each jet's constituents as one 'event'."""
    vecs = _four_vectors(constituents)
    ca = fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_R)
    seq = fastjet.ClusterSequence(vecs, ca)
    sd = seq.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    msd = np.asarray(ak.to_numpy(sd.msoftdrop), dtype=np.float64)
    taus = seq.njettiness(
        measure_definition="NormalizedMeasure", axes_definition="OnePass_KT_Axes", njets=[1, 2, 3, 4],
        beta=1.0, R0=0.8,
    )  # fmt: skip
    taus = np.asarray(ak.to_numpy(taus), dtype=np.float64).reshape(len(msd), 4)
    return msd, taus


def empty_jets() -> dict[str, Any]:
    """A zero-jet result with every branch present and typed (for shards that accept nothing)."""
    out: dict[str, Any] = {b: ak.values_astype(ak.Array([[0.0]])[:0], np.float32) for b in PARTICLE_BRANCHES}
    for b in PARTICLE_BRANCHES:
        if b.startswith("part_is"):
            out[b] = ak.values_astype(out[b], np.int32)
    out.update({b: np.zeros(0, LABEL_DTYPES[b]) for b in LABEL_BRANCHES})
    out.update({b: np.zeros(0, np.float32) for b in JET_BRANCHES + AUX_BRANCHES})
    out["event_index"] = np.zeros(0, np.int64)
    return out


def build_jets(
    candidates: ak.Array, truth: ak.Array, cls: str, cuts: JetCuts
) -> tuple[dict[str, Any], dict[str, int]]:
    """Cluster, select and truth-match jets of a batch; return (JetClass branches per jet, counts).

    The result also holds `event_index` (int64): the position of each jet's event in the batch, from which
    the caller makes `event_id`. Counts: `jets_clustered` (pT > pt_min before the window's other cuts),
    `jets_in_window`, `jets_unmatched` (signal jets in the window without a matching truth object, dropped),
    `truth_objects` and `jets_selected`.
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown jet class {cls!r}")
    n_events = len(candidates)
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, cuts.radius)
    seq = fastjet.ClusterSequence(_four_vectors(candidates), jetdef)
    jets = seq.inclusive_jets(cuts.pt_min)
    cidx = seq.constituent_index(cuts.pt_min)
    pt, eta, phi = _kin(jets.px, jets.py, jets.pz)
    window = (pt > cuts.pt_min) & (pt < cuts.pt_max) & (np.abs(eta) < cuts.abs_eta_max)
    counts: dict[str, int] = {
        "jets_clustered": int(ak.sum(ak.num(jets, axis=1))),
        "jets_in_window": int(ak.sum(window)),
        "truth_objects": int(ak.sum(ak.num(truth, axis=1))),
    }
    signal = cls != "QCD"
    if signal:
        tidx, _ = _match(eta, phi, truth, cuts.radius, require_products=True)
        keep = window & (tidx >= 0)
    else:
        keep = window
    counts["jets_unmatched"] = counts["jets_in_window"] - int(ak.sum(keep)) if signal else 0
    counts["jets_selected"] = int(ak.sum(keep))
    if counts["jets_selected"] == 0:
        return empty_jets(), counts

    # Flatten selected jets to one row per jet.
    n_jets_per_event = ak.to_numpy(ak.num(jets, axis=1))
    event_of_jet = np.repeat(np.arange(n_events), n_jets_per_event)
    kflat = ak.to_numpy(ak.flatten(keep))
    event_index = event_of_jet[kflat]
    jpx = ak.to_numpy(ak.flatten(jets.px))[kflat]
    jpy = ak.to_numpy(ak.flatten(jets.py))[kflat]
    jpz = ak.to_numpy(ak.flatten(jets.pz))[kflat]
    je = ak.to_numpy(ak.flatten(jets.E))[kflat]
    jpt, jeta, jphi = _kin(jpx, jpy, jpz)

    # Constituents: global row = event offset + index within the event; then flat numpy per particle.
    cand_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(candidates, axis=1)))])
    sel_cidx = ak.flatten(cidx, axis=1)[kflat]  # jets x constituents (indices within the event)
    n_const = ak.to_numpy(ak.num(sel_cidx, axis=1))
    jet_of = np.repeat(np.arange(len(n_const)), n_const)
    rows = ak.to_numpy(ak.flatten(sel_cidx)) + cand_offsets[event_index][jet_of]
    flat = ak.flatten(candidates, axis=1)
    c = {f: ak.to_numpy(flat[f])[rows] for f in ak.fields(flat)}
    cpt = np.hypot(c["px"], c["py"])
    order = np.lexsort((-cpt, jet_of))  # pT-sorted within each jet, as in JetClass
    c = {f: v[order] for f, v in c.items()}
    cpt, ceta, cphi = _kin(c["px"], c["py"], c["pz"])
    c["deta"] = np.sign(jeta)[jet_of] * (ceta - jeta[jet_of])
    c["dphi"] = _delta_phi(cphi, jphi[jet_of])

    out: dict[str, Any] = {}
    for name in PARTICLE_BRANCHES:
        field = name[len("part_") :]
        dtype = np.int32 if field.startswith("is") else np.float32
        out[name] = ak.unflatten(c[field].astype(dtype), n_const)
    cons = ak.unflatten(ak.zip({"px": c["px"], "py": c["py"], "pz": c["pz"], "energy": c["energy"]}), n_const)

    msd, taus = _groomed_and_taus(cons)
    jet = {
        "jet_pt": jpt, "jet_eta": jeta, "jet_phi": jphi, "jet_energy": je, "jet_nparticles": n_const,
        "jet_sdmass": msd, "jet_tau1": taus[:, 0], "jet_tau2": taus[:, 1], "jet_tau3": taus[:, 2],
        "jet_tau4": taus[:, 3],
    }  # fmt: skip
    out.update({b: np.asarray(jet[b], dtype=np.float32) for b in JET_BRANCHES})
    n = len(jpt)
    out.update({b: np.full(n, b == f"label_{cls}", dtype=LABEL_DTYPES[b]) for b in LABEL_BRANCHES})

    # Aux truth: the matched object (signal) or the nearest hard parton (QCD; match flag = within R).
    if signal:
        t_sel = ak.to_numpy(ak.flatten(tidx))[kflat]
        match = np.ones(n, dtype=np.float32)
    else:
        qidx, qdr = _match(eta, phi, truth, np.inf, require_products=False)
        t_sel = ak.to_numpy(ak.flatten(qidx))[kflat]
        match = (ak.to_numpy(ak.flatten(qdr))[kflat] < cuts.radius).astype(np.float32)
    t_counts = ak.to_numpy(ak.num(truth, axis=1))
    t_offsets = np.concatenate([[0], np.cumsum(t_counts)])
    flat_truth = ak.flatten(truth, axis=1)
    has = t_sel >= 0
    trow = np.where(has, t_offsets[event_index] + np.maximum(t_sel, 0), 0)
    for b, f in (("aux_genpart_eta", "eta"), ("aux_genpart_phi", "phi"), ("aux_genpart_pid", "pid"),
                 ("aux_genpart_pt", "pt")):  # fmt: skip
        vals = ak.to_numpy(flat_truth[f])[trow] if len(flat_truth) else np.zeros(n)
        out[b] = np.where(has, vals, 0).astype(np.float32)
    out["aux_truth_match"] = np.where(has, match, 0).astype(np.float32)
    out["event_index"] = event_index.astype(np.int64)
    return out, counts
