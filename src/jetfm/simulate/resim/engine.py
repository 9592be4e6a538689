"""The Pythia machinery of re-simulation: rerun hadronisation, or shower + hadronisation, of saved events.

Reading `pythia.event` particle by particle from Python costs more than hadronising the event, so both engines
hand their events to Pythia's own batch reader, `Pythia.nextBatch`, which fills an awkward array in C++:

* `Rehadronizer`: a Pythia with `ProcessLevel:all = off` and `HadronLevel:all = off`. A user hook runs at the
  start of every `next()`: it restores the saved parton-level event and calls `forceHadronLevel(False)`
  (keeping the saved junctions; its return value is recorded). `next()` itself then has nothing left to do
  (no hard process, no parton level, hadron level off) and `nextBatch` reads the hadronised event out.
  One `nextBatch(n)` call re-hadronises n saved events.
* `Reshowerer`: a Pythia reading Les Houches events (`Beams:frameType = 5`) from `HardProcessQueue`, which
  serves the saved hard-process records (incoming partons, outgoing partons, resonances and their decays,
  scale, alpha_s, x1/x2) one after the other. ISR, FSR, MPI and hadronisation are rerun, with the view's own
  settings and seed.

Both are deterministic for a given seed, settings and input, independently of how inputs are batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import pythia8mc

from jetfm.seeds import validate_pythia_seed

# Silence Pythia's banner/statistics; the seed is set per instance.
_QUIET = ("Print:quiet = on", "Next:numberCount = 0", "Random:setSeed = on")


def _configure(pythia: pythia8mc.Pythia, settings: Sequence[str], what: str) -> None:
    for s in settings:
        if not pythia.readString(s, True):
            raise ValueError(f"{what}: Pythia rejected setting {s!r}")


def restore_event(pythia: pythia8mc.Pythia, saved: pythia8mc.Event) -> None:
    """Copy a saved event into `pythia.event` and re-point it at this instance's particle data.

    An Event copy keeps the ParticleData pointer of the generator it came from, and particle decays draw
    their random numbers through it: without re-pointing, another instance's hadron decays would consume
    the *generator's* random stream (views not reproducible, generator sequence perturbed).
    """
    pythia.event.assign(saved)
    pythia.event.init("(restored)", pythia.particleData)
    pythia.event.restorePtrs()


class _RestoreAndHadronize(pythia8mc.UserHooks):
    """Runs at the start of each `next()`: restore the next saved event and hadronise it."""

    def __init__(self) -> None:
        super().__init__()
        self.pythia: pythia8mc.Pythia | None = None
        self.queue: Sequence[pythia8mc.Event] = ()
        self.pos = 0
        self.ok: list[bool] = []

    def onBeginEvent(self) -> None:
        pythia = self.pythia
        assert pythia is not None
        restore_event(pythia, self.queue[self.pos])
        self.pos += 1
        self.ok.append(bool(pythia.forceHadronLevel(False)))


class Rehadronizer:
    """Hadronisation and hadron decays rerun on saved parton-level events, with fresh random numbers."""

    # Leave next() nothing to do beyond what the hook did: no hard process, no resonance decays or showers
    # on the restored record, no second hadron-level pass. The event-check is ours (tests check
    # momentum and charge conservation), since Pythia's check assumes beams in the record it generated.
    ENGINE_SETTINGS = (
        "ProcessLevel:all = off", "ProcessLevel:resonanceDecays = off", "PartonLevel:FSRinResonances = off",
        "HadronLevel:all = off", "Check:event = off",
    )  # fmt: skip

    def __init__(self, settings: Sequence[str], seed: int) -> None:
        validate_pythia_seed(seed)
        self.seed = seed
        self.pythia = pythia8mc.Pythia("", False)
        own = [*_QUIET, *self.ENGINE_SETTINGS, f"Random:seed = {seed}"]
        _configure(self.pythia, [*settings, *own], "rehadronizer")
        self.hook = _RestoreAndHadronize()
        self.hook.pythia = self.pythia
        self.pythia.setUserHooksPtr(self.hook)
        if not self.pythia.init():
            raise RuntimeError("rehadronizer: Pythia init failed (see the log for Pythia's message)")

    def run(self, events: Sequence[pythia8mc.Event]) -> tuple[ak.Array, np.ndarray]:
        """Re-hadronise each saved event once: (events in nextBatch layout, per-event success flags).

        The saved events (`pythia8mc.Event(generator.event)`) refer to their generator's particle data, so
        the generator must still be alive.
        """
        if not events:
            return ak.Array([]), np.zeros(0, dtype=bool)
        self.hook.queue, self.hook.pos, self.hook.ok = events, 0, []
        batch = self.pythia.nextBatch(len(events), "none")
        ok = np.asarray(self.hook.ok, dtype=bool) & ~np.asarray(ak.is_none(batch), dtype=bool)
        if len(batch) != len(events) or len(ok) != len(events):
            raise RuntimeError(f"rehadronizer: {len(events)} events in, {len(batch)} out")
        return batch, ok

    def force_hadron_level(self, event: pythia8mc.Event) -> bool:
        """The bare operation (restore + forceHadronLevel) on this instance: the benchmark's baseline."""
        restore_event(self.pythia, event)
        return bool(self.pythia.forceHadronLevel(False))


@dataclass(frozen=True)
class HardProcess:
    """One hard-scattering record in Les Houches form (what a re-shower starts from)."""

    particles: tuple[tuple[Any, ...], ...]  # LHA addParticle arguments
    scale: float
    alpha_em: float
    alpha_s: float
    id1: int
    id2: int
    x1: float
    x2: float


def hard_process(pythia: pythia8mc.Pythia) -> HardProcess:
    """The current `pythia.process` record (hard process plus resonance decays) in Les Houches form.

    Python loop, but over the ~10-20 entries of the process record, once per event (not per view).
    """
    proc = pythia.process
    info = pythia.infoPython()
    particles = []
    for i in range(3, proc.size()):  # 0 = system, 1-2 = beams
        p = proc[i]
        status = -1 if p.status() == -21 else (1 if p.isFinal() else 2)
        # Process index i becomes LHA index i - 2; mothers that are beams (1, 2) become 0.
        m1 = p.mother1() - 2 if p.mother1() > 2 else 0
        m2 = p.mother2() - 2 if p.mother2() > 2 else 0
        particles.append((p.id(), status, m1, m2, p.col(), p.acol(), p.px(), p.py(), p.pz(), p.e(), p.m(),
                          p.tau(), 9.0, p.scale()))  # fmt: skip
    return HardProcess(
        particles=tuple(particles), scale=proc.scale(), alpha_em=info.alphaEM(), alpha_s=info.alphaS(),
        id1=info.id1(), id2=info.id2(), x1=info.x1(), x2=info.x2(),
    )  # fmt: skip


class HardProcessQueue(pythia8mc.LHAup):
    """Les Houches source serving saved hard processes in order (unit weight, strategy 3: as given)."""

    PROCESS_ID = 9999

    def __init__(self, beam_a: int, beam_b: int, e_cm: float) -> None:
        super().__init__(3)
        self.beams = (beam_a, beam_b, e_cm)
        self.queue: Sequence[HardProcess] = ()
        self.pos = 0

    def setInit(self) -> bool:
        a, b, e_cm = self.beams
        self.setBeamA(a, 0.5 * e_cm)
        self.setBeamB(b, 0.5 * e_cm)
        self.setStrategy(3)
        self.addProcess(self.PROCESS_ID, 1.0, 0.0, 1.0)
        return True

    def setEvent(self, idProcess: int = 0) -> bool:
        if self.pos >= len(self.queue):
            return False
        hp = self.queue[self.pos]
        self.pos += 1
        self.setProcess(self.PROCESS_ID, 1.0, hp.scale, hp.alpha_em, hp.alpha_s)
        for args in hp.particles:
            self.addParticle(*args)
        self.setIdX(hp.id1, hp.id2, hp.x1, hp.x2)
        return True


# Groups whose flags switch on internal hard processes or shape their phase space. A re-shower reads its
# hard processes from the queue only, so these are dropped from the class settings it is given.
PROCESS_GROUPS = frozenset(
    g.lower() for g in (
        "HardQCD", "SoftQCD", "Onia", "Charmonium", "Bottomonium", "Top", "FourthBottom", "FourthTop",
        "FourthPair", "HiggsSM", "HiggsBSM", "SUSY", "NewGaugeBoson", "LeftRightSymmmetry", "LeptoQuark",
        "ExcitedFermion", "ContactInteractions", "HiddenValley", "ExtraDimensionsG*", "ExtraDimensionsTEV",
        "ExtraDimensionsUnpart", "ExtraDimensionsLED", "WeakBosonAndParton", "WeakSingleBoson",
        "WeakDoubleBoson", "WeakBosonExchange", "PromptPhoton", "PhotonCollision", "PhotonParton",
        "PhaseSpace", "Random",
    )
)  # fmt: skip


def shower_settings(settings: Sequence[str]) -> list[str]:
    """The class settings minus hard-process switches and phase-space cuts (kept: tune, PDFs, decays)."""
    out = []
    for s in settings:
        group = s.split(":", 1)[0].strip().lower() if ":" in s else ""
        if group not in PROCESS_GROUPS:
            out.append(s)
    return out


class Reshowerer:
    """Parton shower (ISR, FSR, MPI) and hadronisation rerun on saved hard processes."""

    def __init__(
        self, settings: Sequence[str], seed: int, e_cm: float, beams: tuple[int, int] = (2212, 2212)
    ) -> None:
        validate_pythia_seed(seed)
        self.seed = seed
        self.pythia = pythia8mc.Pythia("", False)
        own = [*_QUIET, "Beams:frameType = 5", f"Random:seed = {seed}"]
        _configure(self.pythia, [*shower_settings(settings), *own], "reshowerer")
        self.source = HardProcessQueue(beams[0], beams[1], e_cm)
        self.pythia.setLHAupPtr(self.source)
        if not self.pythia.init():
            raise RuntimeError("reshowerer: Pythia init failed (see the log for Pythia's message)")

    def run(self, hard: Sequence[HardProcess]) -> tuple[ak.Array, np.ndarray]:
        """Shower and hadronise each hard process once: (events in nextBatch layout, success flags)."""
        if not hard:
            return ak.Array([]), np.zeros(0, dtype=bool)
        self.source.queue, self.source.pos = hard, 0
        batch = self.pythia.nextBatch(len(hard), "none")
        if len(batch) != len(hard) or self.source.pos != len(hard):
            raise RuntimeError(
                f"reshowerer: {len(hard)} hard processes in, {len(batch)} events out, "
                f"{self.source.pos} read from the queue (internal processes switched on?)"
            )
        return batch, ~np.asarray(ak.is_none(batch), dtype=bool)
