"""Shifted evaluation samples: held-out events in a nominal version (view 0) and in shifted versions.

One shard = one class: the re-simulation stage's `resimulate_shard` in the configured mode (default
`reshower`: the hard process is kept, ISR/FSR/MPI and hadronisation are rerun per view), with view 0 at
nominal settings and view k at the settings of shift k (Pythia settings, validated like every re-simulation
setting, and/or a `DetectorVariation` of the tracker). Every version of an event shares its `event_id`; the
ids come from their own stream (`ROBUSTNESS_STREAM`) and the seeds from their own tag, so these events can
never be the nominal sample's or the pretraining views' events, and they are preprocessed into their own
directory that no training rule reads.

Common random numbers: a shift reuses view 0's random numbers (shower, hadronisation and detector seeds), so
it differs from the nominal version by its changed settings only: a tracker variation sees exactly the
nominal version's particles; a shower variation starts from the same random sequence, which decorrelates as
the changed setting alters the emissions. A shift with neither settings nor a detector variation (`replica`)
is the exception: it reruns the nominal settings with its own random numbers, and the distance of its
outputs from view 0 is the re-simulation noise floor (what an independent reshower alone changes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetfm.ids import ROBUSTNESS_STREAM
from jetfm.simulate.detector import NOMINAL_DETECTOR, DetectorVariation

SEED_TAG = "robustness"
NOMINAL = "nominal"


@dataclass(frozen=True)
class Shift:
    """One shifted version: Pythia settings of its view and a detector variation."""

    name: str
    settings: tuple[str, ...] = ()
    detector: DetectorVariation = NOMINAL_DETECTOR


def shifts_from_config(section: dict[str, Any]) -> list[Shift]:
    """The `robustness.shifts` list as Shift objects; names must be unique and not `nominal`."""
    out: list[Shift] = []
    for i, item in enumerate(section.get("shifts", [])):
        name = item.get("name")
        if not name or name == NOMINAL or any(s.name == name for s in out):
            raise ValueError(
                f"robustness.shifts.{i}.name: {name!r} must be a unique, non-empty name "
                f"other than {NOMINAL!r}"
            )
        try:
            detector = DetectorVariation.from_dict(item.get("detector"))
        except ValueError as exc:
            raise ValueError(f"robustness.shifts.{i}.detector: {exc}") from exc
        out.append(Shift(name, tuple(item.get("settings", [])), detector))
    if not out:
        raise ValueError("robustness.shifts: need at least one shifted version")
    return out


def sample_names(section: dict[str, Any]) -> list[str]:
    """Name of each view, in view order: `nominal`, then the shifts."""
    return [NOMINAL, *(s.name for s in shifts_from_config(section))]


def resim_config(config: dict[str, Any]) -> dict[str, Any]:
    """The workflow config with its `resimulate` section replaced by the held-out sample's views."""
    section = config["robustness"]
    shifts = shifts_from_config(section)
    out = copy.deepcopy(config)
    out["resimulate"] = {
        "enabled": True,
        "mode": section["mode"],
        "views": 1 + len(shifts),
        "shards": section["shards"],
        "events_per_shard": section["events_per_shard"],
        "window_margin": config["resimulate"]["window_margin"],
        "view_settings": [[], *(list(s.settings) for s in shifts)],
    }
    return out


def write_sample_shard(
    config: dict[str, Any], cls: str, shard: int, out: str | Path, progress: bool = False
) -> dict[str, Any]:
    """Write the held-out views file of (class, shard): nominal + every shift of the same events."""
    from jetfm.simulate.resim.run import resimulate_shard

    shifts = shifts_from_config(config["robustness"])
    return resimulate_shard(
        resim_config(config), cls, shard, out, progress,
        stream=ROBUSTNESS_STREAM, seed_tag=SEED_TAG,
        view_detectors=[NOMINAL_DETECTOR, *(s.detector for s in shifts)],
        seed_views=seed_views(shifts),
    )  # fmt: skip


def seed_views(shifts: list[Shift]) -> list[int]:
    """Per view, the view whose random numbers it uses: 0 for the nominal version and every real shift (common
    random numbers), its own index for a replica (no settings, nominal detector)."""
    return [0, *(k if not s.settings and s.detector.nominal else 0 for k, s in enumerate(shifts, start=1))]


def preprocess_config(config: dict[str, Any]) -> dict[str, Any]:
    """The nominal preprocessing with every row in the `test` split (nothing here may be trained on) and,
    for this small sample, the processor in-process unless `robustness.dask` says otherwise."""
    out = copy.deepcopy(config)
    out["preprocess"]["split_fractions"] = {"train": 0.0, "val": 0.0, "test": 1.0}
    out["preprocess"]["shards_per_split"] = 1
    out["preprocess"]["input_files"] = []
    out["preprocess"]["dask"] = {**out["preprocess"]["dask"], "cluster": config["robustness"]["dask_cluster"]}
    return out
