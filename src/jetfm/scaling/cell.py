"""One cell of a sweep: train through the one training loop (`jetfm.train.loop.train`) at each candidate
learning rate (a search that extends itself once past an edge), and record N, D, repetitions, the learning
curve, measured compute, loss and wall time in `result.json`.

Selection and scoring are kept apart: the learning rate and the stopping step (the best point of the learning
curve, whose weights the loop keeps in best.pt) are chosen on the validation subset; the cell's loss is those
weights' mean cross-entropy on a disjoint test subset, so choosing the minimum of many noisy points does not
bias the loss the law is fitted to.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetfm.atomic import write_json_atomic
from jetfm.provenance import make_provenance
from jetfm.scaling.flops import measure_compute
from jetfm.scaling.grid import cell_settings, parse_cell_id
from jetfm.train.config import RESUME_MUTABLE, TrainConfig
from jetfm.train.objectives import Supervised

PRETRAINED_MISSING = (
    "scaling.init=pretrained needs the pretrain stage (jetfm.finetune.objective.FineTune, which loads a "
    "pretrained ParT backbone through the training loop's objective interface), and this installation does "
    "not have it; use scaling.init=scratch"
)


class EarlyStopped(Supervised):
    """Supervised training that keeps its best-validation weights (best.pt): a data-limited cell overfits
    before its last step, and its loss is that of its early-stopped weights."""

    best_metric = ("val_loss", "min")


def loop_objective(settings: dict[str, Any], label_smoothing: float = 0.0) -> dict[str, Any]:
    """The `objective` argument of `train` for the cell's initialisation: from scratch, supervised training
    with best-validation weights; for `pretrained`, the pretrain stage's fine-tuning objective (all jets of
    the subset, the whole model trained, the backbone loaded from scaling.pretrained_checkpoint, best
    weights kept), so the two laws differ only in the initialisation."""
    if settings["init"] == "scratch":
        return {"objective": EarlyStopped(label_smoothing)}
    try:
        from jetfm.finetune.objective import FineTune
    except ModuleNotFoundError as exc:
        raise NotImplementedError(PRETRAINED_MISSING) from exc
    path = settings["pretrained_checkpoint"]
    if not path:
        raise ValueError(
            "scaling.init=pretrained needs scaling.pretrained_checkpoint (a pretrain checkpoint.pt)"
        )
    return {"objective": FineTune("scaling", 1.0, path, mode="full", select_best=True)}


def pretrain_size(
    config: dict[str, Any], size: str, files: dict[str, list[str]], out_dir: str | Path, threads: int = 0
) -> dict[str, Any]:
    """One model size's pretraining (scaling.pretrain.method) through the pretrain stage's run entry."""
    from jetfm.pretrain.run import run_pretraining
    from jetfm.scaling.grid import pretrain_settings, pretraining_config

    method = pretrain_settings(config, size)["method"]
    overrides = {"progress": False, "threads": threads}
    return run_pretraining(pretraining_config(config, size), method, files, out_dir, overrides, resume="auto")


def pretraining_jets(settings: dict[str, Any]) -> int:
    """Jets the cell's backbone was pretrained on, counted with repeats (0 from scratch): its compute."""
    path = settings["pretrained_checkpoint"]
    if not path:
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True).get("jets", 0))


def train_config(settings: dict[str, Any], lr: float, threads: int = 0) -> TrainConfig:
    """The cell's TrainConfig: scaling.train on top of the defaults, then the cell's size, steps and lr."""
    steps = settings["steps"]
    values = {
        **settings["train"],
        "model": settings["model"],
        "size": settings["size"],
        "seed": settings["seed"],
        "lr": lr,
        "max_steps": steps,
        "warmup_steps": round(settings["warmup_fraction"] * steps),
        "eval_every": steps,  # the validation passes: the learning curve's steps (and the last one)
        "eval_at": settings.get("eval_at", []),
        "eval_batches": 0,
        "checkpoint_every": max(1, steps // 10),  # a killed or timed-out cell continues from here
        "log_every": max(1, steps // 20),
        "progress": False,
        "threads": threads,
    }
    return TrainConfig.from_dict(values)


def settings_digest(cfg: TrainConfig) -> str:
    """A digest of everything but the learning rate that changes a run's numbers."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_MUTABLE | {"lr"}}
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def run_name(lr: float, digest: str) -> str:
    """`lr<lr>-<digest>`: a rerun continues a run of the same settings (resume) and never one of other
    settings (their directories are removed)."""
    return f"lr{lr:.6g}-{digest}"


def learning_curve(history_csv: Path) -> list[dict[str, float]]:
    """The validation points the loop wrote to history.csv: step, jets seen, validation loss."""
    with open(history_csv) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val_loss")]
    if not rows:
        raise RuntimeError(f"{history_csv} has no validation loss: the training run did not evaluate")
    return [
        {"step": int(r["step"]), "jets_seen": int(r["jets"]), "val_loss": float(r["val_loss"])} for r in rows
    ]


def primary_lr(result_json: Path) -> float:
    """The learning rate a replica trains at: the one its primary cell chose."""
    if not result_json.is_file():
        raise FileNotFoundError(f"{result_json} is missing: a seed replica needs its primary cell's result")
    return float(json.loads(result_json.read_text())["lr"])


def evaluation_device(cfg: TrainConfig) -> torch.device:
    """Where the cell's extra passes (per-jet validation, FLOP probe) run: the training device."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def per_jet_losses(cfg: TrainConfig, run_dir: Path, score_file: str) -> tuple[np.ndarray, int | None]:
    """Cross-entropy of every jet of `score_file` under the run's best-validation weights (best.pt; the final
    ones when the objective kept none), and the step those weights come from."""
    from jetfm.models import build_model
    from jetfm.train.checkpoint import load_checkpoint
    from jetfm.train.objectives import predict

    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    model = build_model(
        cfg.model, ckpt["num_features"], ckpt["num_jet_features"], len(ckpt["classes"]), **cfg.size
    )
    best = run_dir / "best.pt"
    weights = torch.load(best, map_location="cpu", weights_only=True) if best.is_file() else ckpt
    model.load_state_dict(weights["model"])
    device = evaluation_device(cfg)
    probs, labels = predict(model.to(device), [score_file], cfg, device)
    losses = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    return losses, (int(weights["step"]) if best.is_file() else None)


def probe_compute(cfg: TrainConfig, train_file: str, n_batches: int) -> dict[str, Any]:
    """Measured training FLOPs on the first real batches of the cell's data (a fresh model of its size)."""
    from jetfm.models import build_model
    from jetfm.train.data import H5JetStream, make_loader

    stream = H5JetStream(
        [train_file], cfg.batch_size, seed=cfg.seed, block_size=cfg.block_size,
        shuffle_buffer=cfg.shuffle_buffer, nominal_only=cfg.nominal_only,
    )  # fmt: skip
    meta = stream.meta
    model = build_model(cfg.model, meta.num_features, meta.num_jet_features, len(meta.classes), **cfg.size)
    device = evaluation_device(cfg)
    batches = []
    for batch in make_loader(stream):
        batches.append({k: v.to(device) for k, v in batch.items()})
        if len(batches) >= n_batches:
            break
    return measure_compute(model.to(device), batches)


def run_cell(
    config: dict[str, Any],
    cell_id: str,
    train_file: str,
    val_file: str,
    out_dir: str | Path,
    threads: int = 0,
    test_file: str | None = None,
) -> dict[str, Any]:
    """Train one cell (the learning-rate search; a replica at its primary's rate), score the chosen run's
    early-stopped weights on `test_file` (the validation subset when None), write `out_dir/result.json`."""
    from jetfm.scaling.lr import search
    from jetfm.train.loop import train

    t0 = time.time()
    settings = cell_settings(config, cell_id)
    smoothing = float(settings["train"].get("label_smoothing", 0.0))
    loop_objective(settings)  # an unusable initialisation fails here, before any training
    out = Path(out_dir)
    lrs = settings["learning_rates"] or [primary_lr(out.parent / settings["lr_from"] / "result.json")]
    digest = settings_digest(train_config(settings, lrs[0], threads))
    for stale in out.glob("lr*"):  # runs of earlier settings of this cell
        if stale.is_dir() and not stale.name.endswith(digest):
            shutil.rmtree(stale)
    runs: dict[float, dict[str, Any]] = {}

    def train_at(lr: float) -> float:
        cfg = train_config(settings, lr, threads)
        run_dir = out / run_name(lr, digest)
        t_run = time.time()
        print(f"cell {cell_id}: lr {lr:.4g} (run {len(runs) + 1}), {cfg.max_steps} steps", flush=True)
        train(cfg, [train_file], [val_file], None, run_dir, resume=True, workflow_config=config,
              **loop_objective(settings, smoothing))  # fmt: skip
        curve = learning_curve(run_dir / "history.csv")
        runs[lr] = {"dir": run_dir, "curve": curve, "wall_s": time.time() - t_run}
        best = min(p["val_loss"] for p in curve)
        print(f"cell {cell_id}: lr {lr:.4g} -> best validation loss {best:.5f} ({time.time() - t_run:.1f} s)")
        return best

    found = search(train_at, lrs, extend=int(settings["lr_extend"]) if len(lrs) > 1 else 0)
    best_lr = found["lrs"][found["best"]]
    best = runs[best_lr]
    cfg = train_config(settings, best_lr, threads)
    per_jet, best_step = per_jet_losses(cfg, best["dir"], test_file or val_file)
    compute = probe_compute(cfg, train_file, settings["flop_probe_batches"])
    for lr, run in runs.items():  # keep the chosen run's weights only (disk on large sweeps)
        if lr != best_lr:
            for name in ("checkpoint.pt", "best.pt"):
                (run["dir"] / name).unlink(missing_ok=True)
    jets_seen = cfg.max_steps * cfg.batch_size * cfg.grad_accum
    # pretraining compute estimated with the cell's measured FLOPs per jet (the same backbone; the
    # pretraining heads differ) and added to the cell's C: a fine-tuned cell's budget includes its backbone
    flops_pretrain = compute["flops_per_jet"] * pretraining_jets(settings)
    n, n_total = compute["parameters_non_embedding"], compute["parameters_total"]
    particles_seen = jets_seen * compute["particles_per_jet"]
    result = {
        "cell": cell_id,
        "size": parse_cell_id(cell_id).size,
        "init": settings["init"],
        "N": n,
        "N_total": n_total,
        "D": settings["jets"],
        "epochs": settings["epochs"],
        "steps": cfg.max_steps,
        "batch_size": cfg.batch_size * cfg.grad_accum,
        "jets_seen": jets_seen,
        "seed": settings["seed"],
        "replica": settings["replica"],
        "lr": best_lr,
        "lr_candidates": found["lrs"],
        "lr_losses": found["losses"],
        "lr_extended": found["extended"],
        "lr_at_edge": found["at_edge"],
        "best_step": best_step,
        "still_improving": best_step is not None and best_step >= cfg.max_steps,
        "val_loss": float(per_jet.mean()),  # the cell's loss: early-stopped weights on the scoring subset
        "val_loss_selection": found["losses"][found["best"]],
        "val_loss_sem": float(per_jet.std(ddof=1) / np.sqrt(len(per_jet))),
        "val_jets": len(per_jet),
        "scored_on": "test" if test_file else "val",
        "curve": best["curve"],
        "flops": compute["flops_per_jet"] * jets_seen + flops_pretrain,
        "flops_pretrain": flops_pretrain,
        "flops_6ND": 6.0 * n * particles_seen,
        "flops_6ND_total": 6.0 * n_total * particles_seen,
        "flops_ratio_6ND": compute["ratio_to_6N_non_embedding"],
        "flops_ratio_6ND_total": compute["ratio_to_6N_total"],
        "particles_per_jet": compute["particles_per_jet"],
        "train_wall_s": best["wall_s"],
        "wall_s": time.time() - t0,
    }
    result["provenance"] = make_provenance(
        "scaling-cell", config, settings["seed"], counts={"val_jets": len(per_jet), "jets_seen": jets_seen},
        wall_time_s=result["wall_s"], cell_settings=settings,
        inputs={"train": train_file, "val": val_file, "test": test_file},
    )  # fmt: skip
    write_json_atomic(out / "result.json", result)
    print(
        f"cell {cell_id}: N={n} D={settings['jets']} E={settings['epochs']} lr={best_lr:.4g} "
        f"loss={result['val_loss']:.5f}±{result['val_loss_sem']:.5f} C={result['flops']:.3g} FLOPs "
        f"(6ND: {result['flops_6ND']:.3g}) in {result['wall_s']:.1f} s"
    )
    return result
