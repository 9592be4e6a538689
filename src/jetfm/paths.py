"""Every path under `results/` and `logs/`, built in one place (design.md's layout).

The Snakemake rules (`workflow/rules/*.smk`) and the Python stages both call these functions, so a layout
change is one edit here. Each function takes plain values or Snakemake wildcard patterns alike:
`model_dir("tiny", "part")` is `results/models/tiny_part`, `model_dir("{dataset}", "{model}")` the rule's
output pattern. Shard and file indices are zero-padded to four digits (`0000`); a string index (a wildcard)
is used as it is.

The two roots are the config's `results_dir` and `logs_dir` (scratch on a cluster): `configure(config)` sets
them, called by common.smk and by `jetfm.config.load_config` (every `jetfm` command). It also exports them as
JETFM_RESULTS_DIR / JETFM_LOGS_DIR, which this module reads at import, so the processes the workflow starts
(Snakemake's script jobs, Slurm jobs with --export=ALL, training ranks) build the same paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RESULTS_ENV, LOGS_ENV = "JETFM_RESULTS_DIR", "JETFM_LOGS_DIR"
RESULTS = os.environ.get(RESULTS_ENV) or "results"
LOGS = os.environ.get(LOGS_ENV) or "logs"
SPLITS: tuple[str, ...] = ("train", "val", "test")
SUMMARY_NAME = "summary.json"
GROUP_SUMMARY_DIR = "groups"

Index = int | str


def configure(config: Mapping[str, Any]) -> None:
    """Root every path of this process, and of the processes it starts, at the config's `results_dir` and
    `logs_dir` (~ and $VARS expanded)."""
    global RESULTS, LOGS
    RESULTS = root_dir(config, "results_dir", "results")
    LOGS = root_dir(config, "logs_dir", "logs")
    os.environ[RESULTS_ENV], os.environ[LOGS_ENV] = RESULTS, LOGS


def root_dir(config: Mapping[str, Any], key: str, default: str) -> str:
    """`config[key]` expanded, without a trailing slash; a `$VAR` left unexpanded is an error naming it."""
    given = str(config.get(key) or default)
    path = os.path.expandvars(os.path.expanduser(given))
    if "$" in path:
        unset = path[path.index("$") :].split("/")[0]
        raise ValueError(
            f"{key}: {given!r} names an unset environment variable ({unset}); expected a directory, e.g. "
            "/scratch/$USER/jetfm/results with $USER set"
        )
    return path.rstrip("/") or "/"


def index_name(i: Index) -> str:
    """`0007` for 7; a wildcard such as `{shard}` unchanged."""
    return i if isinstance(i, str) else f"{i:04d}"


# --- simulation ---------------------------------------------------------------------------------------------
def sim_dir(dataset: str, results: str | None = None) -> str:
    return f"{results or RESULTS}/sim/{dataset}"


def sim_file(dataset: str, cls: str, shard: Index, views: bool = False, results: str | None = None) -> str:
    """A nominal simulation file, or with `views` a re-simulation views file, of one class and shard."""
    return f"{sim_dir(dataset, results)}/{cls}/{index_name(shard)}{'.views.root' if views else '.root'}"


def sim_files(config: dict[str, Any], views: bool = False, results: str | None = None) -> list[str]:
    """Every nominal (or re-simulation views) file the config asks for, class-major."""
    n = config["resimulate" if views else "simulate"]["shards"]
    return [sim_file(config["dataset"], c, i, views, results) for c in config["classes"] for i in range(n)]


def preprocess_inputs(config: dict[str, Any], results: str | None = None) -> list[str]:
    """What preprocessing reads: the nominal jets and the views when simulating (`simulate.enabled`), then
    the files `preprocess.input_files` names (globs and directories expanded, `expand_input_files`).

    Called when Snakemake builds the DAG (common.smk) and by `jetfm preprocess`, so a pattern that matches
    nothing stops the run there, naming it, instead of giving "Nothing to be done" once shards exist.
    """
    files: list[str] = []
    if config["simulate"].get("enabled", True):
        files += sim_files(config, False, results)
        if config["resimulate"]["enabled"]:
            files += sim_files(config, True, results)
    return files + [f for _, f in preprocess_input_files(config)]


INPUT_SUFFIX = ".root"


def expand_input_files(patterns: Iterable[str], where: str = "preprocess.input_files") -> list[str]:
    """ROOT files named by `patterns`, each a file, a directory (its `*.root` files, not recursive) or a glob
    (`*`, `?`, `[...]`, `**` across directories); `~` and `$VARS` expanded. Matches are sorted per pattern;
    a file matched twice counts once. A pattern that matches no file raises InputPatternError naming it
    and `where` (the config key), so a typo fails at planning time.
    """
    import glob
    import os

    out: dict[str, None] = {}
    for pattern in patterns:
        path = os.path.expandvars(os.path.expanduser(str(pattern)))
        if glob.has_magic(path):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not found:
                unset = "$" in path and f"; is {path[path.index('$') :].split('/')[0]} set?"
                raise InputPatternError(where, pattern, "matches no file" + (unset or ""))
        elif os.path.isdir(path):
            found = sorted(str(p) for p in Path(path).glob(f"*{INPUT_SUFFIX}") if p.is_file())
            if not found:
                raise InputPatternError(where, pattern, f"is a directory without *{INPUT_SUFFIX} files")
        elif os.path.isfile(path):
            found = [path]
        else:
            raise InputPatternError(where, pattern, "does not exist")
        out.update(dict.fromkeys(found))
    return list(out)


class InputPatternError(ValueError):
    """An entry of `preprocess.input_files` (or of `jetfm preprocess`'s inputs) that names no ROOT file."""

    def __init__(self, where: str, pattern: str, problem: str) -> None:
        super().__init__(
            f"{where}: {pattern!r} {problem} (expected a ROOT file, a directory holding "
            f"*{INPUT_SUFFIX} files, or a glob such as /data/JetClass/train_100M/*.root)"
        )


def preprocess_input_files(config: dict[str, Any]) -> list[tuple[str | None, str]]:
    """`preprocess.input_files` expanded, as (split, file): split None for a plain list, else the key of the
    per-split mapping `{train: [...], val: [...], test: [...]}` the file was listed under.

    With `preprocess.splits_from: files` that key is the split the file's jets go to (JetClass's own
    train/val/test files); with `hash` the files are pooled and split by the event_id hash like any input.
    A file under two splits is an error (its jets would be in both).
    """
    import os

    given = config["preprocess"].get("input_files") or []
    if not isinstance(given, dict):
        return [(None, f) for f in expand_input_files(given)]
    out: list[tuple[str | None, str]] = []
    seen: dict[str, str] = {}
    for split in (s for s in SPLITS if s in given):
        for f in expand_input_files(given[split], f"preprocess.input_files.{split}"):
            other = seen.setdefault(os.path.realpath(f), split)
            if other != split:
                raise ValueError(
                    f"preprocess.input_files: {f} is listed under both {other} and {split} (expected each "
                    "file in one split)"
                )
            out.append((split, f))
    return out


def preprocess_file_splits(config: dict[str, Any]) -> dict[str, str]:
    """{real path: split} of the given files when `preprocess.splits_from` is `files`, else {} (hash)."""
    import os

    if config["preprocess"].get("splits_from", "hash") != "files":
        return {}
    return {os.path.realpath(f): s for s, f in preprocess_input_files(config) if s is not None}


def plots_dir(dataset: str) -> str:
    """The dataset's validation figures (simulation, re-simulation spread, preprocessed features)."""
    return f"{RESULTS}/plots/{dataset}"


# --- preprocessing ------------------------------------------------------------------------------------------
def h5_dir(dataset: str) -> str:
    """The preprocessing output of a dataset: `{split}/{i:04d}.h5` shards + summary.json."""
    return f"{RESULTS}/h5/{dataset}"


def shard_path(out_dir: str | Path, split: str, shard: Index) -> Path:
    """`{out_dir}/{split}/{shard:04d}.h5` (design.md)."""
    return Path(out_dir) / split / f"{index_name(shard)}.h5"


def group_summary_path(out_dir: str | Path, group: int) -> Path:
    """The counts one preprocessing group job writes, merged into summary.json by the summary rule."""
    return Path(out_dir) / GROUP_SUMMARY_DIR / f"{group:04d}.json"


def shard_paths(h5_dir: str | Path, split: str, n_shards: int) -> list[str]:
    """The shards of a split that its summary.json lists (the preprocessing fan-out writes none for an empty
    group), else i < n_shards (the preprocessing layout, e.g. shards made elsewhere)."""
    summary = Path(h5_dir) / SUMMARY_NAME
    listed = json.loads(summary.read_text()).get("shards") if summary.is_file() else None
    ids: Iterable[int] = (
        range(n_shards) if listed is None else [s["shard"] for s in listed if s["split"] == split]
    )
    return [str(shard_path(h5_dir, split, i)) for i in ids]


# --- training stages ----------------------------------------------------------------------------------------
def run_set(config: dict[str, Any]) -> str:
    """The results name of a config's pretraining and fine-tuning runs: its dataset, or
    `<dataset>-<finetune.study>` for a study preset (same shards, own results)."""
    study = config.get("finetune", {}).get("study", "")
    return f"{config['dataset']}-{study}" if study else str(config["dataset"])


def model_dir(dataset: str, model: str) -> str:
    """A supervised run (`jetfm train`): checkpoint, history, metrics, plots."""
    return f"{RESULTS}/models/{dataset}_{model}"


def member_dir(dataset: str, model: str, member: Index) -> str:
    """Deep-ensemble member `member` (>= 1) of a supervised run: its seed is the run's seed + member."""
    return f"{model_dir(dataset, model)}_seed{member}"


def comparison_table(dataset: str) -> str:
    """The test-split comparison of every supervised model of a dataset (`train_compare`)."""
    return f"{RESULTS}/models/{dataset}_comparison.csv"


def run_dir(run: str) -> str:
    """A run named relative to results/ (`models/tiny_mlp`, `finetune/tiny/scratch_1_0`), as
    `robustness.models` and the robustness rules name the runs they evaluate."""
    return f"{RESULTS}/{run}"


def pretrain_dir(dataset: str, method: str) -> str:
    """A pretraining run (`jetfm pretrain`; method `tokenizer` for the VQ-VAE)."""
    return f"{RESULTS}/pretrain/{dataset}_{method}"


def finetune_dir(dataset: str) -> str:
    """The fine-tuning study of a dataset: its runs, efficiency table and headline."""
    return f"{RESULTS}/finetune/{dataset}"


def finetune_run_dir(dataset: str, method: str, fraction: float | str, seed: Index) -> str:
    """One fine-tuning run; a float fraction is written as `%g` (0.1, 1)."""
    frac = fraction if isinstance(fraction, str) else f"{fraction:g}"
    return f"{finetune_dir(dataset)}/{method}_{frac}_{seed}"


def scaling_dir(sweep: str) -> str:
    """A scaling sweep: cells/, subsets/, runs.csv, fit.json, figures."""
    return f"{RESULTS}/scaling/{sweep}"


def fpga_dir(student: str | None = None) -> str:
    """The FPGA stage (tables), or one student's float/, qat/, hls/, emulation.json, synthesis.json."""
    return f"{RESULTS}/fpga" + (f"/{student}" if student else "")


def images_dir(dataset: str) -> str:
    """Jet images of a dataset: the average-image figure and, under `transfer/`, the transfer study."""
    return f"{RESULTS}/images/{dataset}"


def images_transfer_dir(dataset: str) -> str:
    """The CNN transfer-learning study: source/, runs/, efficiency.{csv,json,png}."""
    return f"{images_dir(dataset)}/transfer"


def robustness_dir(dataset: str) -> str:
    """The robustness study: held-out sample (sim/), one folder per evaluated run, robustness.csv."""
    return f"{RESULTS}/robustness/{dataset}"


def robustness_sim_file(dataset: str, cls: str, shard: Index) -> str:
    """A held-out views file (nominal + shifted versions of the same events) of one class and shard."""
    return f"{robustness_dir(dataset)}/sim/{cls}/{index_name(shard)}.views.root"


def robustness_h5_dir(dataset: str) -> str:
    """The held-out sample after preprocessing: its own HDF5 directory, so no training rule can read it."""
    return h5_dir(f"{dataset}_robustness")


# --- logs ---------------------------------------------------------------------------------------------------
def log_file(stage: str, name: str) -> str:
    """`logs/<stage>/<name>.log`: one per job, where Snakemake and the progress lines write."""
    return f"{LOGS}/{stage}/{name}.log"
