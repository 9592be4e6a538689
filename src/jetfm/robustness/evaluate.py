"""One tagger on every sample: metrics, drop, output distance, calibration and (if any) its deep ensemble.

Inputs: the run directory of a trained model (`checkpoint.pt`, loaded with the config saved in it), the
validation shards of its dataset (temperature fit), its test shards (a reference row), the held-out
robustness shards (view 0 = nominal, view k = shift k of the same events) and, for an ensemble, the member
runs. The held-out events are checked against every training, validation and test shard of the dataset:
a shared event id is an error, not a warning.

Per sample the rows hold: accuracy and macro AUC (`jetfm.train.metrics.classification_metrics`), their drop
from the nominal version of the same events, NLL and ECE before and after temperature scaling, and the mean
output distance from the nominal version (`distance.output_distance`). Ensemble rows add the spread over
members (std of each member's accuracy and drop) and the predictive spread (`calibration.ensemble_spread`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jetfm.atomic import write_json_atomic
from jetfm.provenance import make_provenance
from jetfm.robustness import calibration
from jetfm.robustness.distance import output_distance
from jetfm.robustness.samples import NOMINAL
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig
from jetfm.train.data import ShardMeta, read_arrays
from jetfm.train.metrics import classification_metrics
from jetfm.train.objectives import Supervised, predict

TEST = "test"  # the dataset's own nominal test split (other events: a reference, no drop)


def load_tagger(run_dir: str | Path) -> tuple[nn.Module, TrainConfig, list[str]]:
    """The trained classifier of a run directory, rebuilt from the config and shapes in its checkpoint.

    Any objective whose checkpoint stores a registry classifier (`build_model(cfg.model, ...)`) under "model"
    loads: supervised runs and fine-tuned runs that save their classifier the same way.
    """
    path = Path(run_dir) / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    classes = list(ckpt["classes"])
    meta = ShardMeta(ckpt["num_features"], ckpt["num_jet_features"], 0, tuple(classes), None)
    module = Supervised().build(cfg, meta)
    try:
        module.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        objective = ckpt.get("objective", {"name": "supervised"}).get("name")
        raise ValueError(
            f"{path}: objective {objective!r} did not store a {cfg.model!r} classifier under 'model' "
            f"(the robustness stage evaluates classifiers): {str(exc).splitlines()[0]}"
        ) from exc
    module.eval()
    return module, cfg, classes


def predict_rows(
    module: nn.Module, cfg: TrainConfig, paths: Sequence[str], device: torch.device, nominal_only: bool
) -> dict[str, np.ndarray]:
    """Softmax outputs of every row (file order) with its label, event id and view."""
    eval_cfg = cfg.replace(nominal_only=nominal_only, progress=False)
    probs, labels = predict(module, list(paths), eval_cfg, device)
    cols = read_arrays(list(paths), ("label", "event_id", "view"), nominal_only=nominal_only)
    if not np.array_equal(labels, cols["label"]):
        raise RuntimeError(f"predict and read_arrays disagree on the row order of {list(paths)}")
    return {"probs": probs.astype(np.float64), **cols}


def check_held_out(sample_ids: np.ndarray, dataset_paths: Sequence[str]) -> int:
    """Raise if any held-out event id occurs in the dataset's shards (training, validation, test, views)."""
    seen = read_arrays(list(dataset_paths), ("event_id",), nominal_only=False)["event_id"]
    shared = np.intersect1d(np.unique(sample_ids), seen)
    if shared.size:
        raise ValueError(
            f"{shared.size} held-out robustness event id(s) (e.g. {int(shared[0])}) also occur in the "
            f"dataset shards {list(dataset_paths)}: the robustness sample is not held out"
        )
    return int(seen.size)


def paired_views(rows: dict[str, np.ndarray], n_views: int) -> list[np.ndarray]:
    """Row indices of each view, ordered so that position i of every view is the same event."""
    found = np.unique(rows["view"])
    if not np.array_equal(found, np.arange(n_views)):
        raise ValueError(
            f"robustness sample: views {found.tolist()} in the shards, but the config names {n_views} "
            "(nominal + robustness.shifts): the sample was made with other shifts; rebuild it"
        )
    base = np.flatnonzero(rows["view"] == 0)
    ids = rows["event_id"][base]
    if np.unique(ids).size != ids.size:
        raise ValueError("robustness sample: an event id occurs twice in the nominal view")
    order = np.argsort(ids, kind="stable")
    out = [base[order]]
    for k in range(1, n_views):
        rows_k = np.flatnonzero(rows["view"] == k)
        ids_k = rows["event_id"][rows_k]
        if not np.array_equal(np.sort(ids_k), ids[order]):
            raise ValueError(f"robustness sample: view {k} does not hold exactly the events of view 0")
        out.append(rows_k[np.argsort(ids_k, kind="stable")])
    return out


def _scores(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    m = classification_metrics(probs, labels, classes)
    return {"accuracy": m["accuracy"], "macro_auc": m["macro_auc"]}


def sample_rows(
    per_sample: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    classes: list[str],
    bins: int,
    temperature: float | None,
) -> dict[str, dict[str, Any]]:
    """Metrics per sample of one predictor; drop and distance against the nominal version where paired."""
    out: dict[str, dict[str, Any]] = {}
    for name, probs in per_sample.items():
        y = labels[name]
        row: dict[str, Any] = {"events": len(y), **_scores(probs, y, classes)}
        row.update(calibration.calibration_numbers(probs, y, bins))
        if temperature is not None:
            scaled = calibration.scale(probs, temperature)
            ts = calibration.calibration_numbers(scaled, y, bins)
            row.update(temperature=temperature, ece_ts=ts["ece"], nll_ts=ts["nll"])
        if name not in (NOMINAL, TEST) and NOMINAL in per_sample:
            nominal = out[NOMINAL]
            row["accuracy_drop"] = nominal["accuracy"] - row["accuracy"]
            if row["macro_auc"] is not None and nominal["macro_auc"] is not None:
                row["auc_drop"] = nominal["macro_auc"] - row["macro_auc"]
            row.update(output_distance(per_sample[NOMINAL], probs))
        out[name] = row
    return out


def evaluate_tagger(
    label: str,
    run_dir: str | Path,
    sample_paths: Sequence[str],
    sample_names: Sequence[str],
    val_paths: Sequence[str],
    test_paths: Sequence[str],
    dataset_paths: Sequence[str],
    member_dirs: Sequence[str | Path] = (),
    bins: int = 10,
    device: str = "cpu",
) -> dict[str, Any]:
    """Everything the table and the figures need about one tagger (and its ensemble, with member runs)."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu")
    predictions: list[dict[str, Any]] = []
    n_checked = 0
    for run in [run_dir, *member_dirs]:
        module, cfg, classes = load_tagger(run)
        module.to(dev)
        val = predict_rows(module, cfg, val_paths, dev, nominal_only=True)
        test = predict_rows(module, cfg, test_paths, dev, nominal_only=True)
        rows = predict_rows(module, cfg, sample_paths, dev, nominal_only=False)
        if not n_checked:
            n_checked = check_held_out(rows["event_id"], dataset_paths)
        views = paired_views(rows, len(sample_names))
        probs = {
            TEST: test["probs"],
            **{n: rows["probs"][v] for n, v in zip(sample_names, views, strict=True)},
        }
        labels = {
            TEST: test["label"],
            **{n: rows["label"][v] for n, v in zip(sample_names, views, strict=True)},
        }
        predictions.append({"val": val, "probs": probs, "labels": labels, "classes": classes})

    single = predictions[0]
    fit = calibration.fit_temperature(single["val"]["probs"], single["val"]["label"])
    labels, classes = single["labels"], single["classes"]
    result: dict[str, Any] = {
        "model": label,
        "run": str(run_dir),
        "samples": [TEST, *sample_names],
        "temperature": fit,
        "held_out_check": {"sample_events": len(labels[NOMINAL]), "dataset_rows_checked": n_checked},
        "single": sample_rows(single["probs"], labels, classes, bins, fit["temperature"]),
        "reliability": {
            name: {
                "single": calibration.reliability(p, labels[name], bins),
                "single_ts": calibration.reliability(
                    calibration.scale(p, fit["temperature"]), labels[name], bins
                ),
            }
            for name, p in single["probs"].items()
        },
    }
    if member_dirs:
        members = [sample_rows(p["probs"], labels, classes, bins, None) for p in predictions]
        ensemble_probs, spread = {}, {}
        for name in single["probs"]:
            ens = calibration.ensemble_spread(np.stack([p["probs"][name] for p in predictions]))
            ensemble_probs[name] = ens.pop("probs")
            spread[name] = ens
        rows = sample_rows(ensemble_probs, labels, classes, bins, None)
        for name, row in rows.items():
            row.update(members=len(predictions), **spread[name])
            for key in ("accuracy", "accuracy_drop", "macro_auc", "auc_drop", "ece", "output_tv"):
                vals = [m[name][key] for m in members if m[name].get(key) is not None]
                if len(vals) == len(members):
                    row[f"{key}_seed_mean"] = float(np.mean(vals))
                    row[f"{key}_seed_std"] = float(np.std(vals, ddof=1))
            result["reliability"][name]["ensemble"] = calibration.reliability(
                ensemble_probs[name], labels[name], bins
            )
        result["ensemble"] = rows
        result["member_runs"] = [str(d) for d in member_dirs]
    return result


def run_evaluation(
    config: dict[str, Any],
    label: str,
    run_dir: str,
    files: dict[str, list[str]],
    outputs: dict[str, str],
    member_dirs: Sequence[str] = (),
    threads: int = 0,
) -> dict[str, Any]:
    """The Snakemake/CLI entry: evaluate, write `temperature.json` (in the run dir), `evaluation.json` and the
    reliability figure. `files`: sample, val, test and dataset (every shard of the dataset) lists."""
    from jetfm.robustness.plots import plot_reliability
    from jetfm.robustness.samples import sample_names

    t0 = time.time()
    if threads:
        torch.set_num_threads(threads)
    section = config["robustness"]
    result = evaluate_tagger(
        label, run_dir, files["sample"], sample_names(section), files["val"], files["test"], files["dataset"],
        member_dirs, bins=section["bins"], device=config.get("train", {}).get("device", "auto"),
    )  # fmt: skip
    counts = {
        "samples": len(result["samples"]),
        "events_per_sample": result["held_out_check"]["sample_events"],
    }
    prov = make_provenance("robustness", config, config.get("seed"), counts, time.time() - t0, model=label)
    result["provenance"] = prov
    write_json_atomic(outputs["temperature"], {**result["temperature"], "model": label, "provenance": prov})
    write_json_atomic(outputs["evaluation"], result)
    plot_reliability(result, outputs["reliability"])
    return result
