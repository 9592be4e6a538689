"""Load and validate the workflow config: the CLI path (`load_config` + `--set`) and the Snakemake path
(common.smk calls `validate_config` on the merged `--configfile`/`--config` dict, and each job again).

The JSON Schema (`config.schema.yaml`, shipped inside the package and symlinked from
`workflow/schemas/`) is the single source of defaults and constraints for both paths. `normalise_config`
first turns what Snakemake's command line can carry (`--config set=KEY=VALUE`, dotted keys, numbers as text)
into the nested, typed config the schema describes (docs/public-jetclass.md, "Overriding nested keys").
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

    Before the schema sees it, `normalise_config` applies the command-line forms Snakemake passes through
    (`--config set=KEY=VALUE`, dotted keys, numbers given as text). `overrides` (dotted key -> the `--set`
    text) makes an error under an overridden key blame that `--set`, not the file.
    """
    origins = {k: f"--set {k}={t}" for k, t in (overrides or {}).items()}
    config = normalise_config(config, origins)
    validator = _fill_defaults(jsonschema.Draft202012Validator)(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_blame(e, source, origins)}: {e.message}" for e in errors]
        head = "invalid config" if len(lines) > 1 else "invalid config:"
        if len(lines) == 1:
            raise ValueError(f"{head} {lines[0].strip()}")
        raise ValueError(f"{head} ({len(lines)} errors):\n" + "\n".join(lines))
    # A second pass validates the filled-in defaults themselves.
    jsonschema.Draft202012Validator(_schema()).validate(config)
    _check_inputs(config, source)
    _check_student_kinds(config["fpga"], source)
    return config


def _check_student_kinds(fpga: dict[str, Any], source: str) -> None:
    """Every name in fpga.students / sizes / overrides is a student kind or names one in
    fpga.sizes.<name>.kind (the schema checks an explicit kind against the same list, `fpga.kinds.KINDS`)."""
    kinds = _schema()["properties"]["fpga"]["properties"]["sizes"]["additionalProperties"]["properties"]
    known = kinds["kind"]["enum"]
    sizes = fpga.get("sizes") or {}
    for name in dict.fromkeys([*fpga.get("students", []), *sizes, *(fpga.get("overrides") or {})]):
        if (sizes.get(name) or {}).get("kind", name) not in known:
            raise ValueError(
                f"invalid config: {source}: student {name!r} is not a student kind and has no "
                f"fpga.sizes.{name}.kind (expected one of {', '.join(known)}, or fpga.sizes.{name}.kind "
                "naming one)"
            )


def _blame(error: jsonschema.ValidationError, source: str, origins: dict[str, str]) -> str:
    """`<file>: key.path` or `--set key=value: key.path`: where the offending value came from."""
    key = ".".join(map(str, error.absolute_path))
    for dotted, origin in origins.items():
        if key == dotted or key.startswith(dotted + ".") or (key and dotted.startswith(key + ".")):
            return f"{origin}: {key or '<top>'}"
    if error.validator == "additionalProperties":
        for dotted, origin in origins.items():  # an unknown key added by --set sits one level below `key`
            parent = dotted.rpartition(".")[0]
            if parent == key and dotted.rpartition(".")[2] in str(error.message):
                return f"{origin}: {key or '<top>'}"
    return f"{source}: {key or '<top>'}"


# --- the command line through Snakemake -------------------------------------------------------------------
# Snakemake's `--config KEY=VALUE` accepts only identifiers as keys (`simulate.jets_per_shard=50` is refused
# by its own parser, with a traceback, before the workflow runs) and reads nested values with YAML's
# BaseLoader, so `--config simulate='{jets_per_shard: 5}'` arrives as the *string* '5'. The workflow's
# validation (common.smk -> validate_config) therefore accepts, documented in docs/public-jetclass.md:
#   --config set=simulate.jets_per_shard=50                                  one dotted override (= --set)
#   --config set='[simulate.jets_per_shard=50, preprocess.dask.workers=4]'   several
#   --config simulate='{jets_per_shard: 50}'                                 merged into the section
# plus dotted keys inside any mapping (`simulate.jets_per_shard: 50` in a config file), and text where the
# schema wants a number, a boolean or null ('5' -> 5, 'false' -> False) or a list of strings ('x' -> ['x']).
SET_KEY = "set"


def normalise_config(config: dict[str, Any], origins: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of `config` with `set` overrides applied, dotted keys nested and text coerced to the schema's
    types. `origins` (dotted key -> where it came from) gains an entry per `set` override, for error lines.

    Idempotent: Snakemake keeps the `set` key in its config after the workflow validates, and every job
    validates the config it is given again, with the same result.
    """
    config = copy.deepcopy(config)
    origins = origins if origins is not None else {}
    given = config.pop(SET_KEY, None)
    config = _nest_dotted(config)
    for item in [given] if isinstance(given, str) else (given or []):
        text = str(item)
        key, sep, value = text.partition("=")
        origin = f"--config {SET_KEY}={text}"
        if not sep or not key.strip():
            raise ValueError(
                f"{origin}: expected KEY=VALUE, e.g. --config {SET_KEY}=simulate.jets_per_shard=50"
            )
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"{origin}: value {value!r} is not valid YAML ({yaml_error(exc)})") from None
        set_dotted(config, key.strip(), parsed, origin=origin)
        origins[key.strip()] = origin
    return _coerce(config, _schema())


def _nest_dotted(node: Any) -> Any:
    """`{"simulate.jets_per_shard": 50}` -> `{"simulate": {"jets_per_shard": 50}}`, at every level; a dotted
    key is applied after the plain keys of its mapping, so it overrides them."""
    if not isinstance(node, dict):
        return node
    out = {k: _nest_dotted(v) for k, v in node.items() if not (isinstance(k, str) and "." in k)}
    for key, value in node.items():
        if isinstance(key, str) and "." in key:
            set_dotted(out, key, _nest_dotted(value), origin=f"config key {key}")
    return out


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Text that the schema wants as another type, converted ('5' -> 5 for an integer); anything else as is,
    for the schema to judge (a failed conversion keeps the text, so the error shows what was given)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: _coerce(v, props[k] if k in props else extra if isinstance(extra, dict) else {})
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items")
        return [_coerce(v, items) for v in value] if isinstance(items, dict) else value
    if not isinstance(value, str):
        return value
    types = _types(schema)
    if not types and "enum" not in schema:
        # a free-form section (e.g. pretrain.train, read as TrainConfig fields): the text means what it would
        # mean in a YAML file, which is what Snakemake's BaseLoader did not do
        parsed = _yaml_scalar(value)
        return value if isinstance(parsed, dict | list) else parsed
    if "null" in types and value in ("null", "Null", "NULL", "~"):
        return None  # YAML's null, even where a string is allowed too
    if "string" in types:
        return value
    if "array" in types and "string" in _types(schema.get("items", {})):
        return [value]
    parsed = _yaml_scalar(value)
    if "enum" in schema:
        return parsed if not isinstance(parsed, str) and parsed in schema["enum"] else value
    ok = {
        "integer": isinstance(parsed, int) and not isinstance(parsed, bool),
        "number": isinstance(parsed, int | float) and not isinstance(parsed, bool),
        "boolean": isinstance(parsed, bool),
        "null": parsed is None,
    }
    return parsed if any(ok.get(t, False) for t in types) else value


def _yaml_scalar(text: str) -> Any:
    """`text` read as YAML (`'5'` -> 5, `'0.5'` -> 0.5, `'1e-3'` -> 0.001, `'true'` -> True), else itself."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(parsed, str):
        try:  # YAML 1.1 wants a dot in a float ('1.0e-3'); Python's float reads '1e-3' as well
            return float(parsed) if parsed.strip().lower() not in ("inf", "nan", "infinity") else parsed
        except ValueError:
            return parsed
    return parsed


def _check_inputs(config: dict[str, Any], source: str) -> None:
    """Settings that depend on each other: Pythia off turns the views off too (they are a Pythia sample;
    resimulate.enabled defaults to true, and config/config.yaml under a preset sets it), and file splits
    need per-split files and no simulated sample (it has no split of its own)."""
    sim, pre = config["simulate"], config["preprocess"]
    given = pre["input_files"]
    if not sim["enabled"]:
        config["resimulate"]["enabled"] = False
        if not any(given.values() if isinstance(given, dict) else given):
            raise ValueError(
                f"invalid config: {source}: simulate.enabled is false and preprocess.input_files is empty "
                "(expected ROOT files to preprocess, e.g. the public JetClass files: docs/public-jetclass.md)"
            )
    if pre["splits_from"] != "files":
        return
    if sim["enabled"]:
        raise ValueError(
            f"invalid config: {source}: preprocess.splits_from is files but simulate.enabled is true "
            "(expected simulate.enabled: false; a simulated sample has no split of its own, or splits_from: "
            "hash)"
        )
    missing = [s for s in ("train", "val", "test") if not (isinstance(given, dict) and given.get(s))]
    if missing:
        raise ValueError(
            f"invalid config: {source}: preprocess.splits_from is files but preprocess.input_files has no "
            f"{missing[0]} files (expected {{train: [...], val: [...], test: [...]}}, each non-empty)"
        )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, apply dotted-key overrides, validate, root jetfm.paths at its results_dir and
    logs_dir; errors are ValueErrors naming the source."""
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
    config = validate_config(config, source=str(path), overrides=texts)
    from jetfm import paths

    try:  # every jetfm command builds its default paths under the config's results_dir / logs_dir
        paths.configure(config)
    except ValueError as exc:
        raise ValueError(f"invalid config: {path}: {exc}") from None
    return config


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
