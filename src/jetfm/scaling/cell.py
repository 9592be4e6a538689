"""One cell of a sweep: train through the one training loop (`jetfm.train.loop.train`) at each candidate
learning rate, keep the best by validation loss, and record N, D, repetitions, measured compute, loss and
wall time in `result.json`.
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

PRETRAINED_MISSING = (
    "scaling.init=pretrained needs the pretrain stage (jetfm.finetune.objective.FineTune, which loads a "
    "pretrained ParT backbone through the training loop's objective interface), and this installation does "
    "not have it; use scaling.init=scratch"
)


def loop_objective(settings: dict[str, Any]) -> dict[str, Any]:
    """Extra arguments of `train` for the cell's initialisation: none from scratch; for `pretrained`, the
    pretrain stage's fine-tuning objective (all jets of the subset, the whole model trained, the backbone
    loaded from scaling.pretrained_checkpoint), so the two laws differ only in the initialisation."""
    if settings["init"] == "scratch":
        return {}
    try:
        from jetfm.finetune.objective import FineTune
    except ModuleNotFoundError as exc:
        raise NotImplementedError(PRETRAINED_MISSING) from exc
    path = settings["pretrained_checkpoint"]
    if not path:
        raise ValueError(
            "scaling.init=pretrained needs scaling.pretrained_checkpoint (a pretrain checkpoint.pt)"
        )
    return {"objective": FineTune("scaling", 1.0, path, mode="full")}


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
        "eval_every": steps,  # one validation pass, at the end: the cell's loss
        "eval_batches": 0,
        "checkpoint_every": max(1, steps // 10),  # a killed or timed-out cell continues from here
        "log_every": max(1, steps // 20),
        "progress": False,
        "threads": threads,
    }
    return TrainConfig.from_dict(values)


def run_name(index: int, cfg: TrainConfig) -> str:
    """`lr<i>-<digest of the config>`: a rerun continues a run of the same config (resume) and never one of
    other settings (their directories are removed)."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_MUTABLE}
    return f"lr{index}-" + hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def final_val_loss(history_csv: Path) -> float:
    """The last validation loss the loop wrote to history.csv."""
    with open(history_csv) as fh:
        losses = [row["val_loss"] for row in csv.DictReader(fh) if row.get("val_loss")]
    if not losses:
        raise RuntimeError(f"{history_csv} has no validation loss: the training run did not evaluate")
    return float(losses[-1])


def evaluation_device(cfg: TrainConfig) -> torch.device:
    """Where the cell's extra passes (per-jet validation, FLOP probe) run: the training device."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def per_jet_val_losses(cfg: TrainConfig, run_dir: Path, val_file: str) -> np.ndarray:
    """Cross-entropy of every validation jet under the run's final weights (for the loss's standard error)."""
    from jetfm.models import build_model
    from jetfm.train.checkpoint import load_checkpoint
    from jetfm.train.objectives import predict

    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    model = build_model(
        cfg.model, ckpt["num_features"], ckpt["num_jet_features"], len(ckpt["classes"]), **cfg.size
    )
    model.load_state_dict(ckpt["model"])
    device = evaluation_device(cfg)
    probs, labels = predict(model.to(device), [val_file], cfg, device)
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


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
) -> dict[str, Any]:
    """Train one cell (every candidate lr), write `out_dir/result.json`, return it."""
    t0 = time.time()
    settings = cell_settings(config, cell_id)
    loop_objective(settings)  # an unusable initialisation fails here, before any training
    out = Path(out_dir)
    configs = [train_config(settings, lr, threads) for lr in settings["learning_rates"]]
    names = [run_name(i, cfg) for i, cfg in enumerate(configs)]
    for stale in out.glob("lr*"):  # runs of earlier settings of this cell
        if stale.is_dir() and stale.name not in names:
            shutil.rmtree(stale)
    candidates = []
    for i, (lr, cfg) in enumerate(zip(settings["learning_rates"], configs, strict=True)):
        run_dir = out / names[i]
        t_run = time.time()
        from jetfm.train.loop import train

        print(
            f"cell {cell_id}: lr {lr:.4g} ({i + 1}/{len(settings['learning_rates'])}), {cfg.max_steps} steps"
        )
        init = loop_objective(settings)  # a fresh objective per run (it records what it loaded)
        train(cfg, [train_file], [val_file], None, run_dir, resume=True, workflow_config=config, **init)
        loss = final_val_loss(run_dir / "history.csv")
        candidates.append({"lr": lr, "val_loss": loss, "wall_s": time.time() - t_run, "dir": run_dir})
        print(f"cell {cell_id}: lr {lr:.4g} -> validation loss {loss:.5f} ({time.time() - t_run:.1f} s)")
    best_i = int(np.nanargmin([c["val_loss"] for c in candidates]))
    best = candidates[best_i]
    cfg = train_config(settings, best["lr"], threads)
    per_jet = per_jet_val_losses(cfg, best["dir"], val_file)
    compute = probe_compute(cfg, train_file, settings["flop_probe_batches"])
    for i, c in enumerate(candidates):  # keep the chosen run's checkpoint only (disk on large sweeps)
        if i != best_i:
            (c["dir"] / "checkpoint.pt").unlink(missing_ok=True)
    jets_seen = cfg.max_steps * cfg.batch_size * cfg.grad_accum
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
        "lr": best["lr"],
        "lr_candidates": [c["lr"] for c in candidates],
        "lr_losses": [c["val_loss"] for c in candidates],
        "lr_at_edge": len(candidates) > 1 and best_i in (0, len(candidates) - 1),
        "val_loss": float(per_jet.mean()),
        "val_loss_loop": best["val_loss"],
        "val_loss_sem": float(per_jet.std(ddof=1) / np.sqrt(len(per_jet))),
        "val_jets": len(per_jet),
        "flops": compute["flops_per_jet"] * jets_seen,
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
        wall_time_s=result["wall_s"], cell_settings=settings, inputs={"train": train_file, "val": val_file},
    )  # fmt: skip
    write_json_atomic(out / "result.json", result)
    print(
        f"cell {cell_id}: N={n} D={settings['jets']} E={settings['epochs']} lr={best['lr']:.4g} "
        f"loss={result['val_loss']:.5f}±{result['val_loss_sem']:.5f} C={result['flops']:.3g} FLOPs "
        f"(6ND: {result['flops_6ND']:.3g}) in {result['wall_s']:.1f} s"
    )
    return result
