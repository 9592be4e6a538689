"""Pythia 8 processes and forced decays that give each JetClass class without a matrix-element generator.

JetClass (Qu, Li, Qian 2022) used MadGraph5 + Pythia 8 + Delphes. Pythia 8 alone has 2->2 processes with the
same final states (reference.md): a boosted H/W/Z recoiling against a parton, t tbar pairs, and hard QCD for
the background (JetClass used Z(nu nu)+jets; the QCD jets of `HardQCD:all` have a somewhat different
quark/gluon mix). `PhaseSpace:pTHatMin` sits below the jet pT window so the window is populated from
its lower edge.

Every setting is checked with `readString` (which returns False for an unknown key or bad value) and
`Pythia.init()` is checked too, so a typo fails loudly before any event is generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pythia8mc

from jetfm import CLASSES
from jetfm.seeds import validate_pythia_seed

QUARKS = "1 2 3 4 5"
LEPTONS = "11 13 15"

# Hard process: H + parton with the full top-loop (l:t) matrix elements, so the Higgs pT spectrum is right
# at pT >> m_t where the infinite-top-mass limit fails.
_HIGGS = (
    "HiggsSM:gg2Hg(l:t) = on",
    "HiggsSM:qg2Hq(l:t) = on",
    "HiggsSM:qqbar2Hg(l:t) = on",
    "25:onMode = off",
)
_TOP = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off")
_W = ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", "24:onMode = off")
_Z = (
    "WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on", "WeakZ0:gmZmode = 2",
    "23:onMode = off", f"23:onIfAny = {QUARKS}",
)  # fmt: skip


def _lepton_quark_w(shard: int) -> tuple[str, str]:
    """One W to quarks, the other to a lepton: W+ hadronic on even shards, W- hadronic on odd ones.

    Pythia's onPos/onNeg switches fix the charge assignment per run; alternating it between shards makes the
    sample charge-symmetric over an even number of shards.
    """
    if shard % 2 == 0:
        return f"24:onPosIfAny = {QUARKS}", f"24:onNegIfAny = {LEPTONS}"
    return f"24:onPosIfAny = {LEPTONS}", f"24:onNegIfAny = {QUARKS}"


def class_process_settings(cls: str, shard: int = 0) -> list[str]:
    """The hard process and forced decays of one class (no beam, phase-space or seed settings)."""
    if cls == "QCD":
        return ["HardQCD:all = on"]
    if cls == "Hbb":
        return [*_HIGGS, "25:onIfMatch = 5 -5"]
    if cls == "Hcc":
        return [*_HIGGS, "25:onIfMatch = 4 -4"]
    if cls == "Hgg":
        return [*_HIGGS, "25:onIfMatch = 21 21"]
    if cls == "H4q":
        return [*_HIGGS, "25:onIfMatch = 24 -24", "24:onMode = off", f"24:onIfAny = {QUARKS}"]
    if cls == "Hqql":
        return [*_HIGGS, "25:onIfMatch = 24 -24", "24:onMode = off", *_lepton_quark_w(shard)]
    if cls == "Zqq":
        return list(_Z)
    if cls == "Wqq":
        return [*_W, f"24:onIfAny = {QUARKS}"]
    if cls == "Tbqq":
        return [*_TOP, f"24:onIfAny = {QUARKS}"]
    if cls == "Tbl":
        return [*_TOP, *_lepton_quark_w(shard)]
    raise ValueError(f"unknown jet class {cls!r}; expected one of {', '.join(CLASSES)}")


def pythia_settings(cls: str, sim_cfg: Mapping[str, Any], shard: int = 0) -> list[str]:
    """All Pythia settings of one class: beams, hard process, forced decays, then the user's extras.

    `sim_cfg` is the validated `simulate:` config section. User settings come last so they can override ours.
    No seed and no printing settings: `make_pythia` adds those.
    """
    return [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        f"Beams:eCM = {float(sim_cfg.get('sqrt_s_gev', 13600.0))}",
        f"PhaseSpace:pTHatMin = {float(sim_cfg.get('pthat_min_gev', 450.0))}",
        *class_process_settings(cls, shard),
        *sim_cfg.get("pythia_settings", ()),
    ]


QUIET_SETTINGS = ("Print:quiet = on", "Next:numberCount = 0", "Random:setSeed = on")


def apply_settings(pythia: pythia8mc.Pythia, settings: Sequence[str], what: str) -> None:
    """readString each setting; raise ValueError naming the first one Pythia rejects."""
    for s in settings:
        if not pythia.readString(s, True):
            raise ValueError(f"{what}: Pythia rejected setting {s!r} (unknown key or invalid value)")


def make_pythia(
    cls: str,
    sim_cfg: Mapping[str, Any],
    seed: int,
    extra_settings: Sequence[str] = (),
    shard: int = 0,
) -> pythia8mc.Pythia:
    """A quiet, seeded, initialised Pythia for one class; every setting and `init()` checked.

    `extra_settings` (applied last) lets re-simulation switch stages off, e.g. `HadronLevel:all = off`.
    """
    validate_pythia_seed(seed)
    pythia = pythia8mc.Pythia("", False)
    apply_settings(
        pythia,
        [*pythia_settings(cls, sim_cfg, shard), *QUIET_SETTINGS, f"Random:seed = {seed}", *extra_settings],
        f"class {cls}",
    )
    if not pythia.init():
        raise RuntimeError(
            f"class {cls}: Pythia init() failed; its log explains why (settings above are known)"
        )
    return pythia
