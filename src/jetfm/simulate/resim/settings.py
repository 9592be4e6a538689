"""Validation of the re-simulation config: mode, K views and per-view Pythia settings.

A view setting that Pythia does not know, that Pythia would silently clamp, or that cannot act at the stage
being rerun (a shower knob in `rehadronize` mode; anything that changes the hard process) would make the views
differ in a way nobody asked for, or not at all. We refuse it up front, naming the setting.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

MODES = ("rehadronize", "reshower")

# Setting groups that act after the parton shower: varied freely in both modes.
HADRON_LEVEL_PREFIXES: tuple[str, ...] = (
    "StringZ:", "StringPT:", "StringFlav:", "StringFragmentation:", "FragmentationSystems:",
    "MiniStringFragmentation:", "ParticleDecays:", "BoseEinstein:", "HadronVertex:",
)  # fmt: skip
# Not variable per view: HadronLevel:* (switching hadronisation or decays off would give unphysical views).
# Setting groups that act in the parton shower / underlying event: only meaningful when it is rerun.
PARTON_LEVEL_PREFIXES: tuple[str, ...] = (
    "TimeShower:", "SpaceShower:", "MultipartonInteractions:", "ColourReconnection:", "BeamRemnants:",
)  # fmt: skip

_SETTING_RE = re.compile(r"^\s*([A-Za-z0-9_]+:[A-Za-z0-9_]+)\s*=\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class ResimSpec:
    """The validated `resimulate:` section in the form the engine needs."""

    mode: str
    views: int
    view_settings: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    def settings_for_view(self, k: int) -> tuple[str, ...]:
        """Settings of view k; views beyond the configured list use the nominal tune."""
        return self.view_settings[k] if k < len(self.view_settings) else ()


@functools.cache
def _probe():  # type: ignore[no-untyped-def]
    """One quiet Pythia instance (not initialised) used only to look settings up."""
    import pythia8mc

    return pythia8mc.Pythia("", False)


def _pythia_kind(key: str) -> str | None:
    s = _probe().settings
    for kind, test in (
        ("flag", s.isFlag), ("mode", s.isMode), ("parm", s.isParm), ("word", s.isWord),
        ("fvec", s.isFVec), ("mvec", s.isMVec), ("pvec", s.isPVec), ("wvec", s.isWVec),
    ):  # fmt: skip
        if test(key):
            return kind
    return None


def validate_setting(setting: str, mode: str, where: str) -> str:
    """Check one "Key = value" string; return it normalised or raise ValueError naming it."""
    match = _SETTING_RE.match(setting) if isinstance(setting, str) else None
    if not match:
        raise ValueError(f"{where}: {setting!r} is not a Pythia setting of the form 'Group:key = value'")
    key, value = match.groups()
    kind = _pythia_kind(key)
    if kind is None:
        raise ValueError(f"{where}: unknown Pythia setting {key!r} (in {setting!r})")
    allowed = HADRON_LEVEL_PREFIXES + (PARTON_LEVEL_PREFIXES if mode == "reshower" else ())
    if not any(key.lower().startswith(p.lower()) for p in allowed):
        if mode == "rehadronize" and any(key.lower().startswith(p.lower()) for p in PARTON_LEVEL_PREFIXES):
            raise ValueError(
                f"{where}: {key!r} acts in the parton shower, which mode 'rehadronize' does not rerun; "
                "use mode 'reshower' to vary it"
            )
        raise ValueError(
            f"{where}: {key!r} may not vary between views (views must share the hard process); "
            f"allowed groups in mode {mode!r}: {', '.join(p.rstrip(':') for p in allowed)}"
        )
    probe = _probe()
    ok = probe.readString(f"{key} = {value}", False)
    probe.settings.resetAll()
    if not ok:
        raise ValueError(
            f"{where}: Pythia rejected {setting!r} (value of the wrong type or outside the allowed range)"
        )
    return f"{key} = {value}"


def resim_spec(section: dict[str, Any]) -> ResimSpec:
    """Validate the `resimulate:` config section (mode, K >= 2, per-view settings) into a ResimSpec."""
    mode = section.get("mode", "rehadronize")
    if mode not in MODES:
        raise ValueError(f"resimulate.mode: {mode!r} is not one of {', '.join(MODES)}")
    views = section.get("views", 4)
    if isinstance(views, bool) or not isinstance(views, int) or views < 2:
        raise ValueError(
            f"resimulate.views: need K >= 2 views per event for a contrastive pair, got {views!r}"
        )
    raw = section.get("view_settings", []) or []
    if not isinstance(raw, list):
        raise ValueError(f"resimulate.view_settings: expected a list of lists of strings, got {raw!r}")
    if len(raw) > views:
        raise ValueError(
            f"resimulate.view_settings: {len(raw)} per-view lists given but only {views} views configured"
        )
    per_view: list[tuple[str, ...]] = []
    for k, items in enumerate(raw):
        if not isinstance(items, list):
            raise ValueError(f"resimulate.view_settings.{k}: expected a list of strings, got {items!r}")
        per_view.append(
            tuple(validate_setting(s, mode, f"resimulate.view_settings.{k}.{i}") for i, s in enumerate(items))
        )
    return ResimSpec(mode=mode, views=views, view_settings=tuple(per_view))
