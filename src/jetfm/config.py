"""Load and validate the workflow config outside Snakemake (the CLI path).

The JSON Schema (`config.schema.yaml`, shipped inside the package and symlinked from
`workflow/schemas/`) is the single source of defaults and constraints for both paths.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(validator_cls: type) -> type:
    """A validator that also fills `default`s, like snakemake.utils.validate(set_default=True)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate_config(config: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled; raise ValueError naming the bad key."""
    config = copy.deepcopy(config)
    validator = _fill_defaults(jsonschema.Draft202012Validator)(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
        raise ValueError(f"invalid config {source}:\n" + "\n".join(lines))
    # A second pass validates the filled-in defaults themselves.
    jsonschema.Draft202012Validator(_schema()).validate(config)
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, apply dotted-key overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    return validate_config(config, source=str(path))


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    node = config
    *parents, leaf = dotted_key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`--set simulate.jets_per_shard=50` style overrides; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out
