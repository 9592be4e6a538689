"""Re-simulation engine (real Pythia): views share what was kept, differ in what was rerun, reproducibly."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import pythia8mc

from jetfm.simulate.resim.engine import Rehadronizer, Reshowerer, hard_process, shower_settings
from jetfm.simulate.resim.settings import resim_spec

# A cheap hard process with a resonance (W -> q q') at the JetClass pT scale.
PROCESS = [
    "Beams:eCM = 13600", "WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
    "24:onMode = off", "24:onIfAny = 1 2 3 4", "PhaseSpace:pTHatMin = 450",
]  # fmt: skip
QUIET = ["Print:quiet = on", "Next:numberCount = 0", "Random:setSeed = on"]


def _generator(extra: list[str], seed: int = 3) -> pythia8mc.Pythia:
    gen = pythia8mc.Pythia("", False)
    for s in [*PROCESS, *QUIET, *extra, f"Random:seed = {seed}"]:
        assert gen.readString(s), s
    assert gen.init()
    return gen


@pytest.fixture(scope="module")
def parton_events():
    # Saved events point at their generator's particle data: the generator must outlive them.
    gen = _generator(["HadronLevel:all = off"])
    events = []
    for _ in range(6):
        assert gen.next()
        events.append(pythia8mc.Event(gen.event))
    yield events
    del events, gen


@pytest.fixture(scope="module")
def hard_processes() -> list:
    gen = _generator(["PartonLevel:all = off", "HadronLevel:all = off"])
    out = []
    for _ in range(4):
        assert gen.next()
        out.append(hard_process(gen))
    return out


def _final(batch: ak.Array) -> ak.Array:
    return batch.prt[batch.prt.status > 0]


def test_rehadronized_views_keep_the_parton_level_and_differ_in_hadrons(parton_events):
    a, ok_a = Rehadronizer(PROCESS, seed=11).run(parton_events)
    b, ok_b = Rehadronizer(PROCESS, seed=12).run(parton_events)
    assert ok_a.all() and ok_b.all()
    for i, saved in enumerate(parton_events):
        n = saved.size()
        # The parton-level history (incl. the W and its decay quarks) is copied verbatim into every view
        # (entry 0, the event-as-a-whole, is recomputed from the final state).
        for view in (a, b):
            px = ak.to_numpy(view.prt.p.px[i][1:n])
            ids = ak.to_numpy(view.prt.id[i][1:n])
            assert np.array_equal(ids, [saved[j].id() for j in range(1, n)])
            assert np.array_equal(px, [saved[j].px() for j in range(1, n)])
        # ... yet the hadrons differ between the views.
        fa, fb = _final(a[i : i + 1])[0], _final(b[i : i + 1])[0]
        assert len(fa) != len(fb) or not np.allclose(ak.to_numpy(fa.p.px), ak.to_numpy(fb.p.px))
    # Physical final states: no coloured partons left, energy and momentum conserved (13.6 TeV pp).
    fin = _final(a)
    assert not ak.any((abs(fin.id) <= 6) | (fin.id == 21))
    assert np.allclose(ak.to_numpy(ak.sum(fin.p.e, axis=1)), 13600.0, atol=1e-3)
    assert np.allclose(ak.to_numpy(ak.sum(fin.p.px, axis=1)), 0.0, atol=1e-3)


def test_rehadronizer_is_deterministic_and_batching_invariant(parton_events):
    one, _ = Rehadronizer(PROCESS, seed=5).run(parton_events)
    r = Rehadronizer(PROCESS, seed=5)
    two = ak.concatenate([r.run(parton_events[:2])[0], r.run(parton_events[2:])[0]])
    assert ak.array_equal(one.prt.p.px, two.prt.p.px)
    assert ak.array_equal(one.prt.id, two.prt.id)
    other, _ = Rehadronizer(PROCESS, seed=6).run(parton_events)
    assert not ak.array_equal(ak.num(one.prt), ak.num(other.prt)) or not ak.array_equal(
        one.prt.p.px, other.prt.p.px
    )


def test_rehadronizer_leaves_the_generator_random_stream_alone(parton_events):
    """Restored events must use the hadroniser's particle data (and random stream), not the generator's."""
    gen_a, gen_b = _generator(["HadronLevel:all = off"], 9), _generator(["HadronLevel:all = off"], 9)
    r = Rehadronizer(PROCESS, seed=5)
    assert gen_a.next() and gen_b.next()
    r.run([pythia8mc.Event(gen_a.event)] * 3)
    assert gen_a.next() and gen_b.next()
    assert gen_a.event.size() == gen_b.event.size()
    assert gen_a.event[gen_a.event.size() - 1].px() == gen_b.event[gen_b.event.size() - 1].px()


def test_reshowered_views_share_the_hard_process(hard_processes):
    settings = [*PROCESS, "TimeShower:alphaSvalue = 0.125"]
    assert not any(s.startswith(("WeakBosonAndParton", "PhaseSpace")) for s in shower_settings(settings))
    a, ok_a = Reshowerer(PROCESS, seed=21, e_cm=13600.0).run(hard_processes)
    b, ok_b = Reshowerer(settings, seed=22, e_cm=13600.0).run(hard_processes)
    assert ok_a.all() and ok_b.all()
    for i, hp in enumerate(hard_processes):
        w = next(p for p in hp.particles if abs(p[0]) == 24)
        for view in (a, b):
            # The event record opens with the hard process: the same W four-momentum in every view.
            ws = view.prt[i][abs(view.prt[i].id) == 24]
            assert np.isclose(float(ws.p.px[0]), w[6], atol=1e-6)
            assert np.isclose(float(ws.p.pz[0]), w[8], atol=1e-6)
    assert not ak.array_equal(ak.num(_final(a)), ak.num(_final(b)))


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"views": 1}, "K >= 2"),
        ({"view_settings": [["StringZ:aLundd = 0.7"]]}, "StringZ:aLundd"),
        ({"view_settings": [[], ["TimeShower:alphaSvalue = 0.12"]]}, "TimeShower:alphaSvalue"),
        ({"mode": "reshower", "view_settings": [["PhaseSpace:pTHatMin = 20"]]}, "PhaseSpace:pTHatMin"),
        ({"view_settings": [["StringPT:sigma = 99"]]}, "StringPT:sigma"),
        ({"views": 2, "view_settings": [[], [], []]}, "3 per-view lists"),
        ({"mode": "recolour"}, "recolour"),
    ],
)
def test_bad_settings_name_the_setting(section, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        resim_spec({"mode": "rehadronize", "views": 4, **section})


def test_good_settings_are_normalised():
    spec = resim_spec(
        {"mode": "reshower", "views": 3, "view_settings": [[], ["TimeShower:alphaSvalue=0.1365"]]}
    )
    assert spec.settings_for_view(1) == ("TimeShower:alphaSvalue = 0.1365",)
    assert spec.settings_for_view(2) == ()


def test_reshower_view_settings_take_effect(hard_processes):
    """FSR renormalisation scale x0.5 (alpha_s up) gives more final-state shower emissions than x2, event by
    event on the same hard processes (Pythia status 51/52 = FSR products)."""
    up = Reshowerer([*PROCESS, "TimeShower:renormMultFac = 0.25"], seed=31, e_cm=13600.0)
    down = Reshowerer([*PROCESS, "TimeShower:renormMultFac = 4.0"], seed=32, e_cm=13600.0)
    hard = list(hard_processes) * 3  # 12 showers per setting

    def fsr_emissions(batch: ak.Array) -> np.ndarray:
        status = abs(batch.prt.status)
        return ak.to_numpy(ak.sum((status == 51) | (status == 52), axis=1))

    n_up, n_down = fsr_emissions(up.run(hard)[0]), fsr_emissions(down.run(hard)[0])
    assert n_up.mean() > 1.2 * n_down.mean()
