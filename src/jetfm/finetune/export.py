"""`jetfm export`: a pretrained backbone as a file someone else can reuse, with its model card.

A training checkpoint carries what an exact resume needs (optimiser, scheduler, per-rank RNG and data
position, the head of the pretraining objective). A user who fine-tunes elsewhere needs none of it, but needs
what the checkpoint leaves implicit: which particle features, in which order and normalisation, the
backbone expects; its size; on what it was trained, for how long and how well; and what it is not for. So
the export holds the backbone weights + architecture + inputs (`backbone.pt`, format `jetfm-backbone-v1`,
loadable with `torch.load(weights_only=True)`), and a model card (`model_card.json` and a short
`model_card.md`) says the rest. `jetfm finetune --from backbone.pt` reads the architecture from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import torch

from jetfm.atomic import atomic_path, write_json_atomic, write_text_atomic
from jetfm.finetune.backbone import EXPORT_FORMAT, VECTOR_NAMES, particle_feature_names, read_backbone
from jetfm.provenance import make_provenance
from jetfm.train.data import read_meta

INTENDED_USE = (
    "Initialisation of a jet tagger (ParT) for fine-tuning on labelled jets, or a frozen feature extractor "
    "(linear probe), for jets reconstructed like the training data (anti-kT R=0.8, particle-flow candidates)."
)
LIMITS = (
    "Trained on simulated jets of one generator and detector setting: expect a shift on data or other "
    "simulations; not calibrated; not a physics measurement. Inputs must follow the listed features, order "
    "and normalisation (or go through the four_vectors adapter, which fills the features a 4-vector cannot "
    "give with 0). Small demo models are for testing the pipeline, not for physics."
)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _summary_next_to(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint.parent / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _training_files(summary: dict[str, Any], given: list[str] | None) -> list[str]:
    if given:
        return list(given)
    inputs = summary.get("provenance", {}).get("inputs") or {}
    files = inputs.get("train") or []
    return [f for f in files if Path(f).is_file()]


def _inputs(files: list[str], num_features: int, checkpoint: Path) -> dict[str, Any]:
    """Feature names and normalisation from the training shards (the checkpoint does not carry them)."""
    if not files:
        raise ValueError(
            f"export of {checkpoint}: cannot name the backbone's inputs: no training shard given (--train) "
            "and none listed in the summary.json next to the checkpoint; expected the shards it was trained "
            "on"
        )
    meta = read_meta(files[:1])
    names = particle_feature_names(meta.feature_names, meta.num_features)
    if meta.num_features != num_features or names is None:
        raise ValueError(
            f"export of {checkpoint}: training shard {files[0]} has {meta.num_features} particle features "
            f"(names {meta.feature_names!r}), the backbone expects {num_features} named ones"
        )
    with h5py.File(files[0], "r") as f:
        raw = f.attrs.get("feature_transforms")
    normalisation = json.loads(raw) if raw is not None else None
    return {
        "num_features": num_features, "feature_names": list(names), "vector_names": list(VECTOR_NAMES),
        "normalisation": normalisation, "max_particles": meta.max_particles,
        "note": "part_features (N, P, F) in this order and normalisation; part_vectors (N, P, 4) in GeV; "
        "part_mask (N, P) true for real particles",
    }  # fmt: skip


def model_card(
    spec_size: dict[str, Any], parameters: int, inputs: dict[str, Any], summary: dict[str, Any],
    source: dict[str, Any], provenance: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The model card as a plain dict (model_card.json); `card_markdown` renders it."""
    counts = summary.get("provenance", {}).get("counts", {})
    metrics = {k: v for k, v in summary.items() if k.startswith(("val_", "skill_", "baseline_"))}
    return {
        "name": f"jetfm ParT backbone ({source['objective'].get('name', '?')})",
        "architecture": {"model": "part", "size": spec_size, "parameters": parameters},
        "inputs": inputs,
        "training": {
            "objective": source["objective"], "steps": source["step"], "jets_seen": summary.get("jets_seen"),
            "train_rows": counts.get("train_rows"),
            "config": summary.get("provenance", {}).get("train_config"),
            "dataset": summary.get("provenance", {}).get("config", {}).get("dataset"),
            "data_files": (summary.get("provenance", {}).get("inputs") or {}).get("train"),
            "labels_used": False,
        },
        "metrics": metrics,
        "provenance": {"source_checkpoint": source["path"], "source_sha256": source["sha256"],
                       "training_git_revision": summary.get("provenance", {}).get("git_revision"),
                       "export": provenance},
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }  # fmt: skip


def card_markdown(card: dict[str, Any]) -> str:
    arch, inputs, train = card["architecture"], card["inputs"], card["training"]
    size = ", ".join(f"{k}={v}" for k, v in arch["size"].items())
    metrics = "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
                        for k, v in card["metrics"].items()) or "- none recorded"  # fmt: skip
    feats = ", ".join(inputs["feature_names"])
    return "\n".join([
        f"# {card['name']}", "",
        f"**Architecture**: ParT backbone, {arch['parameters']:,} parameters ({size}).", "",
        f"**Inputs**: {inputs['num_features']} particle features in this order: {feats}; "
        f"4-vectors {', '.join(inputs['vector_names'])}; up to {inputs['max_particles']} particles. "
        "Normalisation per feature: `model_card.json` → inputs.normalisation "
        "(clip((x - shift) * scale)).", "",
        f"**Training**: {train['objective'].get('name')} ({json.dumps(train['objective'])}), "
        f"{train['steps']} steps, {train['jets_seen']} jets seen from {train['train_rows']} unlabelled "
        f"training jets of dataset {train['dataset']!r}; no labels used.", "",
        "**Validation metrics**:", metrics, "",
        f"**Provenance**: from `{card['provenance']['source_checkpoint']}` (sha256 "
        f"{card['provenance']['source_sha256'][:12]}…), training git revision "
        f"{card['provenance']['training_git_revision']}.", "",
        f"**Intended use**: {card['intended_use']}", "",
        f"**Limits**: {card['limits']}", "",
        "Fine-tune: `jetfm finetune --from backbone.pt --fraction 0.1` (jetfm shards) or "
        "`jetfm finetune --from backbone.pt --data my.h5 --adapter four_vectors` (your HDF5).", "",
    ])  # fmt: skip


def export_backbone(
    checkpoint: str | Path, out_dir: str | Path, train_files: list[str] | None = None
) -> dict[str, Any]:
    """checkpoint.pt -> out_dir/{backbone.pt, model_card.json, model_card.md}; returns the card."""
    checkpoint, out = Path(checkpoint), Path(out_dir)
    spec = read_backbone(checkpoint)
    summary = _summary_next_to(checkpoint)
    inputs = _inputs(_training_files(summary, train_files), spec.num_features, checkpoint)
    source = {"path": str(checkpoint), "sha256": sha256(checkpoint), "step": spec.step,
              "objective": spec.objective}  # fmt: skip
    payload = {
        "format": EXPORT_FORMAT, "architecture": {"model": "part", "size": spec.size},
        "inputs": {k: inputs[k] for k in ("num_features", "feature_names", "normalisation")},
        "state": spec.state, "step": spec.step, "objective": spec.objective,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "backbone.pt") as tmp:
        torch.save(payload, tmp)
    provenance = make_provenance("export", {}, 0, inputs={"checkpoint": str(checkpoint)})
    parameters = sum(v.numel() for k, v in spec.state.items())
    card = model_card(spec.size, parameters, inputs, summary, source, provenance)
    write_json_atomic(out / "model_card.json", card)
    write_text_atomic(out / "model_card.md", card_markdown(card))
    return card
