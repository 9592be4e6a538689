"""The FPGA stage's steps per student, as the CLI and the Snakemake rules call them.

1. `train_student`: distil the float student from the teacher (`<out>/float/`), then prune + QAT from it
   (`<out>/qat/`); both are runs of the one training loop with the `Distill` objective.
2. `convert_student`: hls4ml project (`<out>/hls/`), compile, emulation over the whole test split against
   the quantised PyTorch model, metrics of teacher / float / quantised / emulation, operation counts ->
   `<out>/emulation.json`.
3. `synthesise_student`: vendor C synthesis when a tool exists -> `<out>/synthesis.json`.
4. `write_tables`: the report tables over all students.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetfm.atomic import write_json_atomic, write_text_atomic
from jetfm.fpga.compress import CompressSpec, Quantize, apply_compression, sparsity
from jetfm.fpga.convert import (
    HLSSettings,
    convert,
    emulate,
    first_disagreement,
    quantised_inputs,
    quantised_logits,
)
from jetfm.fpga.distill import Distill, load_teacher
from jetfm.fpga.opcount import operation_counts
from jetfm.fpga.students import build_student
from jetfm.fpga.synth import synthesise
from jetfm.provenance import make_provenance
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.data import H5JetStream, make_loader, read_meta
from jetfm.train.metrics import classification_metrics
from jetfm.train.objectives import predict


def teacher_path(config: dict[str, Any]) -> str:
    """`fpga.teacher` if set, else the supervised ParT of the dataset."""
    return config["fpga"].get("teacher") or f"results/models/{config['dataset']}_part/checkpoint.pt"


def _phase_config(
    config: dict[str, Any], student: str, phase: str, extra: dict[str, Any] | None
) -> TrainConfig:
    """TrainConfig of a phase (train, qat): `train:` < fpga.<phase> < fpga.overrides.<student>.<phase>."""
    mine = config["fpga"].get("overrides", {}).get(student, {}).get(phase, {})
    return from_workflow(config, student, {**config["fpga"][phase], **mine, **(extra or {})})


def train_student(
    config: dict[str, Any], student: str, files: dict[str, list[str]], out_dir: str | Path,
    teacher: str | None = None, overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Float distillation then pruning + QAT; returns both runs' test metrics."""
    fpga = config["fpga"]
    out, teacher = Path(out_dir), teacher or teacher_path(config)
    common = {"size": fpga["sizes"].get(student, {}), **fpga["distill"]}
    results = {}
    for phase, compress, init in (
        ("train", None, None),
        ("qat", CompressSpec.from_dict(fpga["compress"]), out / "float" / "checkpoint.pt"),
    ):
        objective = Distill(student, teacher, compress=compress, init_from=init, **common)
        cfg = _phase_config(config, student, phase, overrides)
        run_dir = out / ("float" if phase == "train" else "qat")
        print(
            f"{student}: {'distillation' if phase == 'train' else 'pruning + QAT'} -> {run_dir}", flush=True
        )
        res = _train(cfg, files, run_dir, config, objective)
        results[phase] = res.get("metrics")
    return results


def _train(
    cfg: TrainConfig, files: dict[str, list[str]], out: Path, config: dict[str, Any], objective: Distill
):
    from jetfm.train.loop import train

    return train(
        cfg, files["train"], files["val"], files["test"], out, workflow_config=config, objective=objective
    )


def load_student(
    student: str, checkpoint: str | Path, test_files: list[str], size: dict[str, Any],
    compress: CompressSpec | None,
) -> torch.nn.Module:  # fmt: skip
    """A student as a run saved it (with its quantisers and masks when `compress`)."""
    meta = read_meta(test_files)
    model = build_student(student, meta.num_features, meta.num_jet_features, len(meta.classes), size)
    if compress is not None:
        apply_compression(model.core, compress)
        model.input_quant = Quantize(compress.types()["input"])
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    return model.eval()


def _test_batches(test_files: list[str], cfg: TrainConfig) -> list[dict[str, torch.Tensor]]:
    stream = H5JetStream(test_files, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size,
                         nominal_only=cfg.nominal_only, drop_last=False)  # fmt: skip
    return list(make_loader(stream))


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


SUMMARY_KEYS = ("accuracy", "macro_auc", "macro_f1", "n")


def convert_student(
    config: dict[str, Any],
    student: str,
    test_files: list[str],
    out_dir: str | Path,
    teacher: str | None = None,
) -> dict[str, Any]:
    """hls4ml conversion + compile + emulation of the whole test split; writes `<out>/emulation.json`."""
    t_start = time.time()
    fpga, out = config["fpga"], Path(out_dir)
    spec, hls = CompressSpec.from_dict(fpga["compress"]), HLSSettings.from_dict(fpga["hls"])
    size = fpga["sizes"].get(student, {})
    cfg = _phase_config(config, student, "qat", None)
    qat = load_student(student, out / "qat" / "checkpoint.pt", test_files, size, spec)
    float_student = load_student(student, out / "float" / "checkpoint.pt", test_files, size, None)
    teacher_model, teacher_info = load_teacher(teacher or teacher_path(config))

    batches = _test_batches(test_files, cfg)
    labels = torch.cat([b["label"] for b in batches]).numpy()
    x = quantised_inputs(qat, batches)
    reference = quantised_logits(qat.core, x)
    print(f"{student}: converting with hls4ml ({hls.backend}, {hls.part}) and compiling", flush=True)
    model, compile_s = convert(qat.core, qat.input_shape, spec, hls, out / "hls")
    emulated, jets_per_s = emulate(model, x)
    agree = emulated.argmax(1) == reference.argmax(1)
    diff = np.abs(emulated - reference)
    disagree = np.flatnonzero(~agree | (diff.max(1) > 0))
    first = first_disagreement(model, qat.core, x[disagree[:16]]) if disagree.size else None

    classes = list(read_meta(test_files).classes)
    device = torch.device("cpu")
    probs = {
        "float_teacher": predict(teacher_model, test_files, cfg, device)[0],
        "float_student": predict(float_student, test_files, cfg, device)[0],
        "quantised_student": _softmax(reference),
        "emulation": _softmax(emulated),
    }
    metrics = {k: classification_metrics(p, labels, classes) for k, p in probs.items()}
    result = {
        "student": student,
        "n_test": len(labels),
        "argmax_agreement": float(agree.mean()),
        "n_argmax_disagree": int((~agree).sum()),
        "n_output_differ": int(disagree.size),
        "max_abs_output_diff": float(diff.max()),
        "bit_exact": bool(diff.max() == 0),
        "first_disagreeing_layer": first,
        "summary": {k: {m: v[m] for m in SUMMARY_KEYS} for k, v in metrics.items()},
        "metrics": metrics,
        "sparsity": sparsity(qat.core),
        "operations": operation_counts(model),
        "compile_s": round(compile_s, 3),
        "emulation_jets_per_s": round(jets_per_s, 1),
        "hls": vars(hls),
        "precisions": {k: v.hls() for k, v in spec.types().items()},
        "teacher": teacher_info,
        "provenance": make_provenance(
            "fpga",
            config,
            config.get("seed"),
            counts={"test_jets": len(labels)},
            wall_time_s=time.time() - t_start,
            inputs={"test": test_files},
        ),
    }
    write_json_atomic(out / "emulation.json", result)
    print(
        f"{student}: emulation agreement {result['argmax_agreement']:.4%} on {len(labels)} jets, "
        f"max |diff| {result['max_abs_output_diff']:.3g}, compile {compile_s:.1f} s",
        flush=True,
    )
    return result


def synthesise_student(
    config: dict[str, Any], student: str, test_files: list[str], out_dir: str | Path
) -> dict[str, Any]:
    """`<out>/synthesis.json`: the parsed C-synthesis report, or why there is none."""
    fpga, out = config["fpga"], Path(out_dir)
    spec, hls = CompressSpec.from_dict(fpga["compress"]), HLSSettings.from_dict(fpga["hls"])
    required = bool(fpga["synthesis"]["required"])

    def make_model() -> Any:
        qat = load_student(
            student, out / "qat" / "checkpoint.pt", test_files, fpga["sizes"].get(student, {}), spec
        )
        return convert(qat.core, qat.input_shape, spec, hls, out / "synth", compile=False)[0]

    result = {"student": student, **synthesise(make_model, hls.backend, required), "hls": vars(hls)}
    write_json_atomic(out / "synthesis.json", result)
    print(
        f"{student}: synthesis {result['status']}" + (f" ({result['reason']})" if "reason" in result else "")
    )
    return result


ACCURACY_ROWS = ("float_teacher", "float_student", "quantised_student", "emulation")


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["student"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_tables(
    emulation_files: list[str], synthesis_files: list[str], accuracy_out: str, synthesis_out: str
) -> None:
    """accuracy.csv: per student, the four models' accuracy / AUC, agreement, operations;
    synthesis.csv: latency, II and resources per student (or the skip reason)."""
    rows = []
    for path in emulation_files:
        e = json.loads(Path(path).read_text())
        teacher_acc = e["summary"]["float_teacher"]["accuracy"]
        for name in ACCURACY_ROWS:
            s = e["summary"][name]
            rows.append({
                "student": e["student"], "model": name, "accuracy": f"{s['accuracy']:.4f}",
                "macro_auc": f"{s['macro_auc']:.4f}" if s["macro_auc"] is not None else "",
                "accuracy_over_teacher": f"{s['accuracy'] / teacher_acc:.4f}" if teacher_acc else "",
                "n_test": s["n"], "argmax_agreement": f"{e['argmax_agreement']:.6f}",
                "max_abs_output_diff": f"{e['max_abs_output_diff']:.3g}",
                "multiplications": e["operations"]["totals"].get("multiplications", 0),
                "nonzero_weights": e["operations"]["totals"].get("nonzero_weights", 0),
            })  # fmt: skip
    write_text_atomic(accuracy_out, _csv(rows))
    srows = []
    for path in synthesis_files:
        s = json.loads(Path(path).read_text())
        row: dict[str, Any] = {"student": s["student"], "status": s["status"], "reason": s.get("reason", "")}
        for k in ("latency_cycles", "latency_ns", "interval_cycles"):
            for kk, v in (s.get(k) or {}).items():
                row[f"{k}_{kk}"] = v
        for k, v in (s.get("resources") or {}).items():
            row[k] = v
            row[f"{k}_percent"] = s["utilisation_percent"].get(k, "")
        srows.append(row)
    keys = list(dict.fromkeys(k for r in srows for k in r))
    write_text_atomic(synthesis_out, _csv([{k: r.get(k, "") for k in keys} for r in srows]))
