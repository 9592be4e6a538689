"""Config sections that become dataclasses: refuse unknown keys in one line naming the allowed ones.

A typo in a config key must fail loudly instead of silently leaving the default in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

UNKNOWN = "unknown {what} key(s) {unknown}; allowed: {allowed}"


def strict_fields(cls: type, values: Mapping[str, Any], what: str, message: str = UNKNOWN) -> dict[str, Any]:
    """`values` as keyword arguments of dataclass `cls`; a key that is not a field raises ValueError with
    `message` filled in (`what` names the section, `unknown` and `allowed` are sorted key lists)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(message.format(what=what, unknown=unknown, allowed=sorted(names)))
    return dict(values)
