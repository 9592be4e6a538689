"""Parametric CMS-like detector response with the numbers of the Delphes CMS card (JetClass's detector).

Input: final-state particle records (`jetfm.simulate.particles`). Output: particle-flow candidates, one list
per event, with fields `DETECTOR_FIELDS`:

    px, py, pz, energy                 float64, GeV (after smearing)
    charge                             float32 (0 for calorimeter-only candidates)
    d0val, d0err, dzval, dzerr         float32, mm (0 for neutral candidates, as in JetClass)
    isChargedHadron ... isMuon         int32 PID flags, exactly one set per candidate

Model (`delphes_cms`), all vectorised over the flattened particles of a batch:
* neutrinos are invisible; nothing outside |eta| < 2.5 is tracked, nothing outside |eta| < 5 is seen;
* charged particles are tracked with the card's pT/eta-dependent efficiencies (hadrons, electrons, muons),
  their pT smeared with the card's charged-hadron sigma(pT)/pT (also for e and mu), and their true impact
  parameters (from the production vertex, straight-line approximation: the helix sagitta over mm-scale decay
  lengths is negligible) smeared with per-track errors that are written as d0err / dzerr;
* charged particles that are not tracked end in the calorimeters, as Delphes' energy flow does: electrons as
  photons (ECAL), hadrons as neutral hadrons (HCAL); muons leave no calorimeter energy;
* photons -> ECAL, neutral hadrons -> HCAL, summed per calorimeter cell (towers, see `_towers`), each
  tower's energy smeared log-normally (as Delphes) with the card's resolutions, kept above the energy
  threshold (ECAL 0.5 GeV, HCAL 1.0 GeV) and significance E/sigma >= 2 (card values); massless candidates.
`truth`: every visible final-state particle with its true momentum and true (unsmeared) impact parameters,
errors 0.

`DetectorVariation` degrades the `delphes_cms` tracker for robustness studies (a worse track pT resolution, a
lower tracking efficiency): the default variation leaves every number and every random draw as they are, so
the nominal output is unchanged bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetfm.configkeys import strict_fields
from jetfm.simulate.particles import NEUTRINOS

DETECTOR_FIELDS = (
    "px", "py", "pz", "energy", "charge", "d0val", "d0err", "dzval", "dzerr",
    "isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon",
)  # fmt: skip
DETECTORS = ("delphes_cms", "truth")

TRACKER_ETA = 2.5
ECAL_ETA = 3.0
CALO_ETA = 5.0
ECAL_E_MIN, HCAL_E_MIN, CALO_SIGNIFICANCE_MIN = 0.5, 1.0, 2.0


@dataclass(frozen=True)
class DetectorVariation:
    """A shifted `delphes_cms` tracker: sigma(pT)/pT times `track_pt_resolution_scale`, efficiency times
    `tracking_efficiency_scale`. Untracked charged particles then reach the calorimeters, as in Delphes."""

    track_pt_resolution_scale: float = 1.0
    tracking_efficiency_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.track_pt_resolution_scale <= 10.0:
            raise ValueError(
                f"detector variation: track_pt_resolution_scale = {self.track_pt_resolution_scale!r}, "
                "expected a factor in (0, 10]"
            )
        if not 0.0 < self.tracking_efficiency_scale <= 1.0:
            raise ValueError(
                f"detector variation: tracking_efficiency_scale = {self.tracking_efficiency_scale!r}, "
                "expected a factor in (0, 1] (an efficiency cannot exceed 1)"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DetectorVariation:
        """From a config mapping; unknown keys raise naming the allowed ones."""
        message = "{what}: unknown key(s) {unknown}; allowed: {allowed}"
        values = strict_fields(cls, values or {}, "detector variation", message)
        return cls(**{k: float(v) for k, v in values.items()})

    @property
    def nominal(self) -> bool:
        return self == DetectorVariation()


NOMINAL_DETECTOR = DetectorVariation()


def tracking_efficiency(pt: np.ndarray, abseta: np.ndarray, apid: np.ndarray | None = None) -> np.ndarray:
    """Delphes CMS tracking efficiency: charged hadrons (reference.md), electrons and muons (card values)."""
    barrel = abseta <= 1.5
    low = np.where(barrel, 0.70, 0.60)  # 0.1 < pT <= 1 GeV
    high = np.where(barrel, 0.95, 0.85)  # pT > 1 GeV
    eff = np.where(pt > 1.0, high, low)
    if apid is not None:
        ele = np.where(
            pt <= 1.0, np.where(barrel, 0.73, 0.50),
            np.where(pt <= 100.0, np.where(barrel, 0.95, 0.83), np.where(barrel, 0.99, 0.90)),
        )  # fmt: skip
        muo = np.where(pt <= 1.0, np.where(barrel, 0.75, 0.70), np.where(barrel, 0.99, 0.98))
        eff = np.where(apid == 11, ele, np.where(apid == 13, muo, eff))
    return np.where((pt > 0.1) & (abseta <= TRACKER_ETA), eff, 0.0)


def track_pt_resolution(pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """Relative track pT resolution sigma(pT)/pT, the Delphes CMS card's formula.

    Delphes multiplies it by pT.

    Taken literally, as Delphes applies it to JetClass: 6 % at low pT and ~65 % at 500 GeV in the barrel,
    pessimistic for the real CMS tracker at high pT, but that is the detector JetClass was made with.
    """
    c = np.where(abseta <= 0.5, 0.06, np.where(abseta <= 1.5, 0.10, 0.25))
    s = np.where(abseta <= 0.5, 1.3e-3, np.where(abseta <= 1.5, 1.7e-3, 3.1e-3))
    return np.sqrt(c**2 + (pt * s) ** 2)


def ecal_sigma(energy: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """ECAL energy resolution (GeV) of the Delphes CMS card: barrel, endcap and forward terms."""
    core = np.sqrt((0.008 * energy) ** 2 + 0.11**2 * energy + 0.40**2)
    barrel = (1.0 + 0.64 * abseta**2) * core
    endcap = (2.16 + 5.6 * (abseta - 2.0) ** 2) * core
    forward = np.sqrt((0.107 * energy) ** 2 + 2.08**2 * energy)
    return np.where(abseta <= 1.5, barrel, np.where(abseta <= 2.5, endcap, forward))


def hcal_sigma(energy: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """HCAL energy resolution (GeV) of the Delphes CMS card (barrel/endcap, forward)."""
    central = np.sqrt((0.050 * energy) ** 2 + 1.50**2 * energy)
    forward = np.sqrt((0.130 * energy) ** 2 + 2.70**2 * energy)
    return np.where(abseta <= 3.0, central, forward)


def _ip_sigma(pt: np.ndarray, abseta: np.ndarray, central: tuple[float, float], forward: tuple[float, float]):
    """sigma(pT) = sqrt(a^2 + (b/pT)^2), matched to the card's values at 1 GeV and at high pT.

    `central` applies for |eta| < 0.9, `forward` for 1.4 < |eta| < 2.5, linear in |eta| in between.
    """

    def ab(s1: float, s_inf: float) -> tuple[float, float]:
        return s_inf, float(np.sqrt(s1**2 - s_inf**2))

    a_c, b_c = ab(*central)
    a_f, b_f = ab(*forward)
    w = np.clip((abseta - 0.9) / (1.4 - 0.9), 0.0, 1.0)
    a = (1 - w) * a_c + w * a_f
    b = (1 - w) * b_c + w * b_f
    return np.sqrt(a**2 + (b / np.maximum(pt, 1e-3)) ** 2)


def d0_sigma(pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """Transverse impact-parameter resolution (mm): 0.075 -> 0.011 (|eta| < 0.9), 0.156 -> 0.014 (forward)."""
    return _ip_sigma(pt, abseta, (0.075, 0.011), (0.156, 0.014))


def dz_sigma(pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """Longitudinal impact-parameter resolution (mm): 0.111 -> 0.032 (|eta| < 0.9), 0.67 -> 0.085."""
    return _ip_sigma(pt, abseta, (0.111, 0.032), (0.67, 0.085))


def impact_parameters(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True d0 and dz (mm) of a straight track from its production vertex (Delphes' sign convention)."""
    pt = np.maximum(np.hypot(px, py), 1e-12)
    d0 = (x * py - y * px) / pt
    dz = z - (x * px + y * py) / pt * (pz / pt)
    return d0, dz


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Log-normal draw with the given mean and standard deviation (positive, as Delphes uses)."""
    mean = np.maximum(mean, 1e-9)
    s2 = np.log1p((sigma / mean) ** 2)
    return rng.lognormal(np.log(mean) - 0.5 * s2, np.sqrt(s2))


def _flat(particles: ak.Array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    counts = ak.to_numpy(ak.num(particles, axis=1))
    flat = ak.flatten(particles, axis=1)
    return counts, {f: ak.to_numpy(flat[f]) for f in ak.fields(flat)}


def _event_index(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def _pack(event: np.ndarray, n_events: int, cols: dict[str, np.ndarray]) -> ak.Array:
    """Candidates (any order) -> jagged per-event records, grouped by event (stable within an event)."""
    order = np.argsort(event, kind="stable")
    counts = np.bincount(event, minlength=n_events)
    rec = ak.zip({k: cols[k][order] for k in DETECTOR_FIELDS}, depth_limit=1)
    return ak.unflatten(rec, counts)


def _flags(n: int, **on: np.ndarray) -> dict[str, np.ndarray]:
    names = ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")
    return {k: np.asarray(on.get(k, np.zeros(n, bool)), dtype=np.int32) for k in names}


def detector_response(
    particles: ak.Array,
    detector: str,
    rng: np.random.Generator,
    variation: DetectorVariation = NOMINAL_DETECTOR,
) -> ak.Array:
    """Generator-level final-state particles -> particle-flow candidates (see the module docstring).

    `rng` supplies every random number (efficiencies, smearing), so a seeded generator gives reproducible
    output. `detector` is "delphes_cms" or "truth"; `variation` shifts the delphes_cms tracker (the nominal
    variation takes the nominal code path: same numbers, same random draws).
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {', '.join(DETECTORS)}")
    if detector == "truth" and not variation.nominal:
        raise ValueError(f"detector 'truth' has no tracker to vary; got {variation}")
    counts, c = _flat(particles)
    n_events = len(counts)
    event = _event_index(counts)
    px, py, pz, e = c["px"], c["py"], c["pz"], c["energy"]
    apid = np.abs(c["pid"])
    charge = c["charge"]
    pt = np.hypot(px, py)
    p = np.sqrt(px**2 + py**2 + pz**2)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-12))
    abseta = np.abs(eta)
    d0, dz = impact_parameters(c["vx"], c["vy"], c["vz"], px, py, pz)
    visible = ~np.isin(apid, NEUTRINOS) & (pt > 0)
    is_charged = (charge != 0) & visible
    zeros = np.zeros_like(px)

    if detector == "truth":
        keep = visible
        ch = is_charged[keep]
        cols = {
            "px": px[keep], "py": py[keep], "pz": pz[keep], "energy": e[keep],
            "charge": charge[keep].astype(np.float32),
            "d0val": np.where(ch, d0[keep], 0.0).astype(np.float32), "d0err": zeros[keep].astype(np.float32),
            "dzval": np.where(ch, dz[keep], 0.0).astype(np.float32), "dzerr": zeros[keep].astype(np.float32),
            **_flags(
                int(keep.sum()),
                isElectron=ch & (apid[keep] == 11), isMuon=ch & (apid[keep] == 13),
                isChargedHadron=ch & (apid[keep] != 11) & (apid[keep] != 13),
                isPhoton=~ch & (apid[keep] == 22), isNeutralHadron=~ch & (apid[keep] != 22),
            ),
        }  # fmt: skip
        return _pack(event[keep], n_events, cols)

    # --- tracks ---
    efficiency = tracking_efficiency(pt, abseta, apid)
    if variation.tracking_efficiency_scale != 1.0:
        efficiency = efficiency * variation.tracking_efficiency_scale
    tracked = is_charged & (rng.random(px.shape) < efficiency)
    t = tracked
    res = track_pt_resolution(pt[t], abseta[t])
    if variation.track_pt_resolution_scale != 1.0:
        res = res * variation.track_pt_resolution_scale
    scale = _lognormal(rng, np.ones_like(res), res)  # Delphes draws pT log-normally; direction kept
    mass2 = np.maximum(e[t] ** 2 - p[t] ** 2, 0.0)
    tpx, tpy, tpz = px[t] * scale, py[t] * scale, pz[t] * scale
    te = np.sqrt(tpx**2 + tpy**2 + tpz**2 + mass2)
    s_d0, s_dz = d0_sigma(pt[t], abseta[t]), dz_sigma(pt[t], abseta[t])
    td0 = d0[t] + s_d0 * rng.standard_normal(s_d0.shape)
    tdz = dz[t] + s_dz * rng.standard_normal(s_dz.shape)
    ta = apid[t]
    tracks = {
        "px": tpx, "py": tpy, "pz": tpz, "energy": te, "charge": charge[t].astype(np.float32),
        "d0val": td0.astype(np.float32), "d0err": s_d0.astype(np.float32),
        "dzval": tdz.astype(np.float32), "dzerr": s_dz.astype(np.float32),
        **_flags(int(t.sum()), isElectron=ta == 11, isMuon=ta == 13, isChargedHadron=(ta != 11) & (ta != 13)),
    }  # fmt: skip

    # --- calorimeters: photons, untracked electrons -> ECAL; other neutrals, untracked hadrons -> HCAL ---
    untracked = visible & ~tracked
    em = (apid == 22) | (apid == 11)
    to_ecal = untracked & em & (abseta <= ECAL_ETA)
    to_hcal = untracked & (apid != 13) & ~to_ecal & (abseta <= CALO_ETA)  # incl. forward (HF) photons
    cal = _towers(rng, event, to_ecal, to_hcal, e, eta, np.arctan2(py, px))
    cols = {k: np.concatenate([tracks[k], cal[k]]) for k in DETECTOR_FIELDS}
    return _pack(np.concatenate([event[t], cal["event"]]), n_events, cols)


def _towers(
    rng: np.random.Generator,
    event: np.ndarray,
    to_ecal: np.ndarray,
    to_hcal: np.ndarray,
    energy: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
) -> dict[str, np.ndarray]:
    """Deposits -> towers: energy summed per (event, calorimeter, cell), the sum smeared, thresholds applied.

    As Delphes' Calorimeter module: a tower's energy is the sum of what entered its cell, smeared once with
    the resolution of that sum, kept above the energy threshold and E/sigma >= 2, placed at a uniformly random
    point of the cell (Delphes' SmearTowerCenter) and massless. Cells are uniform per region (ECAL 0.02 x 1
    degree as in the CMS card's barrel, HCAL 0.087 x 5 degrees, forward 0.175 x 10 degrees): the card's
    coarser endcap binning in eta is not reproduced.
    """
    dep = to_ecal | to_hcal
    is_ecal = to_ecal[dep]
    d_eta, d_phi = eta[dep], phi[dep]
    forward = ~is_ecal & (np.abs(d_eta) > 3.0)
    calo = np.where(is_ecal, 0, np.where(forward, 2, 1))
    size_eta = np.array([0.02, 0.087, 0.175])[calo]
    size_phi = (2 * np.pi / np.array([360.0, 72.0, 36.0]))[calo]
    ieta = np.floor(d_eta / size_eta).astype(np.int64)
    iphi = np.floor((d_phi + np.pi) / size_phi).astype(np.int64)
    key = (event[dep].astype(np.int64) << 24) | (calo << 22) | ((ieta + 512) << 10) | iphi
    cells, inverse = np.unique(key, return_inverse=True)
    e_true = np.bincount(inverse, weights=energy[dep], minlength=len(cells))
    c_event = cells >> 24
    c_calo = (cells >> 22) & 0x3
    c_ieta = ((cells >> 10) & 0xFFF) - 512
    c_iphi = cells & 0x3FF
    c_size_eta = np.array([0.02, 0.087, 0.175])[c_calo]
    c_size_phi = (2 * np.pi / np.array([360.0, 72.0, 36.0]))[c_calo]
    t_eta = (c_ieta + rng.random(len(cells))) * c_size_eta
    t_phi = (c_iphi + rng.random(len(cells))) * c_size_phi - np.pi
    ecal = c_calo == 0
    abseta = np.abs(t_eta)
    sigma = np.where(ecal, ecal_sigma(e_true, abseta), hcal_sigma(e_true, abseta))
    e_meas = _lognormal(rng, e_true, sigma)
    keep = (e_meas >= np.where(ecal, ECAL_E_MIN, HCAL_E_MIN)) & (e_meas >= CALO_SIGNIFICANCE_MIN * sigma)
    e_meas, t_eta, t_phi, ecal = e_meas[keep], t_eta[keep], t_phi[keep], ecal[keep]
    pt = e_meas / np.cosh(t_eta)
    z32 = np.zeros(len(e_meas), dtype=np.float32)
    return {
        "px": pt * np.cos(t_phi), "py": pt * np.sin(t_phi), "pz": pt * np.sinh(t_eta), "energy": e_meas,
        "charge": z32, "d0val": z32, "d0err": z32, "dzval": z32, "dzerr": z32,
        **_flags(len(e_meas), isPhoton=ecal, isNeutralHadron=~ecal), "event": c_event[keep],
    }  # fmt: skip
