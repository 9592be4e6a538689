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


def validate_config(
    config: dict[str, Any], source: str = "<config>", overrides: dict[str, str] | None = None
) -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled; raise ValueError naming the bad key.

    `overrides` (dotted key -> the `--set` text) makes an error under an overridden key blame that `--set`,
    not the file.
    """
    config = copy.deepcopy(config)
    validator = _fill_defaults(jsonschema.Draft202012Validator)(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_blame(e, source, overrides or {})}: {e.message}" for e in errors]
        head = "invalid config" if len(lines) > 1 else "invalid config:"
        if len(lines) == 1:
            raise ValueError(f"{head} {lines[0].strip()}")
        raise ValueError(f"{head} ({len(lines)} errors):\n" + "\n".join(lines))
    # A second pass validates the filled-in defaults themselves.
    jsonschema.Draft202012Validator(_schema()).validate(config)
    return config


def _blame(error: jsonschema.ValidationError, source: str, overrides: dict[str, str]) -> str:
    """`<file>: key.path` or `--set key=value: key.path`: where the offending value came from."""
    key = ".".join(map(str, error.absolute_path))
    for dotted, text in overrides.items():
        if key == dotted or key.startswith(dotted + ".") or (key and dotted.startswith(key + ".")):
            return f"--set {dotted}={text}: {key or '<top>'}"
    if error.validator == "additionalProperties":
        for dotted, text in overrides.items():  # an unknown key added by --set sits one level below `key`
            parent = dotted.rpartition(".")[0]
            if parent == key and dotted.rpartition(".")[2] in str(error.message):
                return f"--set {dotted}={text}: {key or '<top>'}"
    return f"{source}: {key or '<top>'}"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, apply dotted-key overrides, validate; errors are ValueErrors naming the source."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"config file {path} {what}; expected a YAML file (--config)")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path}: {yaml_error(exc)}") from None
    if not isinstance(config, dict):
        raise ValueError(
            f"config file {path}: expected a mapping of sections at the top, got {type(config).__name__}"
        )
    texts = {}
    for key, value in (overrides or {}).items():
        text = getattr(overrides, "texts", {}).get(key, value)
        texts[key] = text
        set_dotted(config, key, value, origin=f"--set {key}={text}")
    return validate_config(config, source=str(path), overrides=texts)


def yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: what went wrong and where (line and column are 1-based)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"YAML syntax error at {where}{problem}"


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any, origin: str = "") -> None:
    node = config
    *parents, leaf = dotted_key.split(".")
    for i, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            where = origin or dotted_key
            raise ValueError(
                f"{where}: {'.'.join(parents[: i + 1])} is {node!r}, not a section; cannot set {dotted_key}"
            )
    node[leaf] = value


class Overrides(dict):
    """Parsed `--set` values, remembering the text each came from (for error messages)."""

    texts: dict[str, str]


def parse_overrides(items: list[str] | None, option: str = "--set") -> dict[str, Any]:
    """`--set simulate.jets_per_shard=50` style overrides; values parsed as YAML scalars."""
    out = Overrides()
    out.texts = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"{option} {item!r}: expected KEY=VALUE, e.g. {option} simulate.jets_per_shard=50"
            )
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(
                f"{option} {item}: value {value!r} is not valid YAML ({yaml_error(exc)}); quote strings, "
                "e.g. KEY='[a, b]'"
            ) from None
        out.texts[key.strip()] = value
    return out
