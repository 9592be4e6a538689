"""The FPGA stage's steps per student, as the CLI and the Snakemake rules call them.

1. `train_student`: distil the float student from the teacher (`<out>/float/`), then prune + QAT from it
   (`<out>/qat/`); both are runs of the one training loop with the `Distill` objective.
2. `convert_student`: hls4ml project (`<out>/hls/`), compile, emulation over the whole test split (fed the
   unquantised features: hls4ml rounds them itself) against the QAT model's own forward and the exported
   quantised model; pipelined Verilog (`<out>/rtl/`) simulated with Verilator on the first `rtl_jets` test
   jets against both; metrics of teacher / float / quantised / emulation / RTL, operation counts ->
   `<out>/emulation.json`.
3. `synthesise_student`: the open-source estimate (yosys synth_xilinx of the Verilog: LUT/FF/carry/DSP, logic
   depth, latency, timing estimate) and, when enabled and a tool exists, vendor C synthesis ->
   `<out>/synthesis.json`, each labelled with its tool and version.
4. `write_tables`: the report tables over all students.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetfm import paths
from jetfm.atomic import write_json_atomic, write_text_atomic
from jetfm.fpga.compress import CompressSpec
from jetfm.fpga.convert import HLSSettings, agreement, firmware_inputs
from jetfm.fpga.distill import Distill, load_teacher
from jetfm.fpga.kinds import kind_of
from jetfm.fpga.pareto import pareto_rows, plot_pareto
from jetfm.fpga.routes import Route, route_of
from jetfm.fpga.rtl import OpenFlowSettings, tool_version
from jetfm.fpga.students import build_student
from jetfm.fpga.synth import synthesise
from jetfm.fpga.transfer import TransferSet
from jetfm.fpga.trigger import DEFAULT_RATES, operating_points, table_rows
from jetfm.fpga.yosys import family_of, synthesise_verilog
from jetfm.provenance import make_provenance
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.data import H5JetStream, make_loader, read_meta
from jetfm.train.metrics import accuracy_ratio, classification_metrics
from jetfm.train.objectives import is_main_rank, predict


def teacher_path(config: dict[str, Any]) -> str:
    """`fpga.teacher` if set, else the supervised ParT of the dataset."""
    return config["fpga"].get("teacher") or f"{paths.model_dir(config['dataset'], 'part')}/checkpoint.pt"


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
    loss = {k: v for k, v in fpga["distill"].items() if k != "choose"}
    chosen = choose_distillation(config, student, files, out, teacher, overrides)
    common = {"size": fpga["sizes"].get(student, {}), **loss, **chosen}
    common["transfer"] = TransferSet.from_config(config)  # the distillation's training jets (fpga.transfer)
    results = {}
    route = route_of(student, common["size"])
    spec = route.compression(CompressSpec.from_dict(fpga["compress"]))
    for phase, compress, init in (("train", None, None), ("qat", spec, out / "float" / "checkpoint.pt")):
        objective = Distill(student, teacher, compress=compress, init_from=init, **common)
        cfg = _phase_config(config, student, phase, overrides)
        run_dir = out / ("float" if phase == "train" else "qat")
        if phase == "train" and chosen:  # the chosen sweep run is this run (same settings and seed)
            if is_main_rank():
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.copytree(_distill_run_dir(out, chosen), run_dir)
            _barrier()
            results[phase] = json.loads((run_dir / "metrics.json").read_text())
            continue
        print(
            f"{student}: {'distillation' if phase == 'train' else route.second_phase} -> {run_dir}",
            flush=True,
        )
        res = _train(cfg, files, run_dir, config, objective)
        results[phase] = res.get("metrics")
    note = route.finish_training(
        lambda: load_student(student, out / "qat" / "checkpoint.pt", files["test"], common["size"], None),
        files["train"], _phase_config(config, student, "qat", overrides), out / "qat",
    )  # fmt: skip
    if note:
        print(f"{student}: {note}", flush=True)
    return results


def distill_grid(distill: dict[str, Any]) -> list[dict[str, float]]:
    """The (temperature, alpha) points of `fpga.distill.choose` (a missing list keeps the configured value);
    [] unless there are at least two points to choose from."""
    choose = distill.get("choose") or {}
    temperatures = choose.get("temperature") or [distill.get("temperature", 4.0)]
    alphas = choose.get("alpha") or [distill.get("alpha", 0.7)]
    grid = [{"temperature": float(t), "alpha": float(a)} for t in temperatures for a in alphas]
    return grid if len(grid) > 1 else []


def _barrier() -> None:
    """All ranks of a multi-process student job wait here (no-op in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _distill_run_dir(out: Path, point: dict[str, float]) -> Path:
    return out / "distill_sweep" / f"T{point['temperature']:g}_a{point['alpha']:g}"


def choose_distillation(
    config: dict[str, Any], student: str, files: dict[str, list[str]], out: Path, teacher: str,
    overrides: dict[str, Any] | None,
) -> dict[str, float]:  # fmt: skip
    """T and alpha of the distillation, chosen on the validation split: one float-phase run per point of
    `fpga.distill.choose` (under `<out>/distill_sweep/`), scored by the accuracy of its final weights on every
    validation jet; the test split chooses nothing. Writes `<out>/distill_choice.json`; {} when off."""
    grid = distill_grid(config["fpga"]["distill"])
    if not grid:
        return {}
    size = config["fpga"]["sizes"].get(student, {})
    cfg = _phase_config(config, student, "train", overrides)
    points = []
    for point in grid:
        run_dir = _distill_run_dir(out, point)
        print(
            f"{student}: distillation T={point['temperature']:g}, alpha={point['alpha']:g} -> {run_dir}",
            flush=True,
        )
        objective = Distill(student, teacher, size=size, transfer=TransferSet.from_config(config), **point)
        _train(cfg, files, run_dir, config, objective)
        model = load_student(student, run_dir / "checkpoint.pt", files["val"], size, None)
        probs, labels = predict(model, files["val"], cfg, torch.device("cpu"))
        points.append(
            {**point, "val_accuracy": float((probs.argmax(1) == labels).mean()), "n_val": len(labels)}
        )
    best = max(points, key=lambda p: p["val_accuracy"])  # ties: the first point; every rank gets the same
    chosen = {"temperature": best["temperature"], "alpha": best["alpha"]}
    if is_main_rank():
        metric = "accuracy of the float phase's final weights on the whole validation split"
        write_json_atomic(out / "distill_choice.json", {"chosen": chosen, "points": points, "metric": metric})
    print(
        f"{student}: chose T={chosen['temperature']:g}, alpha={chosen['alpha']:g} on validation", flush=True
    )
    return chosen


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
    route_of(student, size).prepare(model, compress)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    return model.eval()


def load_firmware_student(
    student: str, out: Path, test_files: list[str], size: dict[str, Any], spec: CompressSpec
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained student as its firmware is made from it (the QAT checkpoint and what its route restores
    beyond it); the emulation.json keys that restoring adds."""
    qat = load_student(student, out / "qat" / "checkpoint.pt", test_files, size, spec)
    return qat, route_of(student, size).restore(qat, out / "qat")


def _test_batches(test_files: list[str], cfg: TrainConfig) -> list[dict[str, torch.Tensor]]:
    stream = H5JetStream(test_files, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size,
                         nominal_only=cfg.nominal_only, drop_last=False)  # fmt: skip
    return list(make_loader(stream))


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


SUMMARY_KEYS = ("accuracy", "macro_auc", "macro_f1", "n")


def _rtl_step(
    route: Route, qat: torch.nn.Module, spec: CompressSpec, hls: HLSSettings, flow: OpenFlowSettings,
    out: Path, x: np.ndarray, emulated: np.ndarray, reference: np.ndarray,
) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
    """Verilog + Verilator on the first `rtl_jets` jets; agreement with the emulation and PyTorch."""
    if not flow.enabled:
        return {"status": "skipped", "reason": "fpga.open_flow.enabled is false"}, None
    n = len(x) if flow.rtl_jets == 0 else min(flow.rtl_jets, len(x))
    try:
        summary, rtl_out = route.rtl(qat, spec, hls, flow, out / "rtl", simulate=x[:n])
    except ValueError as exc:  # a layer or rounding the RTL route does not translate: say which
        return {"status": "skipped", "reason": str(exc)}, None
    if rtl_out is not None:
        summary["vs_emulation"] = agreement(rtl_out, emulated[:n])
        summary["vs_quantised_pytorch"] = agreement(rtl_out, reference[:n])
    return summary, rtl_out


def convert_student(
    config: dict[str, Any],
    student: str,
    test_files: list[str],
    out_dir: str | Path,
    teacher: str | None = None,
) -> dict[str, Any]:
    """hls4ml conversion + compile + emulation of the whole test split, RTL simulation of its first
    `fpga.open_flow.rtl_jets`, by the student's route; writes `<out>/emulation.json`."""
    t_start = time.time()
    fpga, out = config["fpga"], Path(out_dir)
    spec, hls = CompressSpec.from_dict(fpga["compress"]), HLSSettings.from_dict(fpga["hls"])
    flow = OpenFlowSettings.from_dict(fpga.get("open_flow", {}))
    size = fpga["sizes"].get(student, {})
    route = route_of(student, size)
    cfg = _phase_config(config, student, "qat", None)
    qat, restored = load_firmware_student(student, out, test_files, size, spec)

    batches = _test_batches(test_files, cfg)
    labels = torch.cat([b["label"] for b in batches]).numpy()
    raw = firmware_inputs(qat, batches)  # unquantised: the emulation rounds them itself
    print(f"{student}: hls4ml ({route.frontend} frontend, {hls.backend}, {hls.part}): converting, compiling",
          flush=True)  # fmt: skip
    conv = route.convert(qat, raw, spec, hls, out / "hls")
    rtl = _rtl_step(route, qat, spec, hls, flow, out, conv.rtl_inputs, conv.emulated, conv.reference)
    return write_emulation(
        config, student, test_files, out, cfg, t_start, teacher or teacher_path(config),
        outputs={"labels": labels, "quantised": conv.reference, "emulated": conv.emulated, "rtl": rtl},
        timing={"compile_s": conv.compile_s, "emulation_jets_per_s": conv.jets_per_s},
        extras={"kind": kind_of(student, size), "route": route.name, "quantiser": route.quantiser,
                **conv.extras, **restored},
    )  # fmt: skip


def write_emulation(
    config: dict[str, Any], student: str, test_files: list[str], out: Path, cfg: TrainConfig, t_start: float,
    teacher_file: str, outputs: dict[str, Any], timing: dict[str, float], extras: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The scoring every student shares: teacher / float / quantised / emulation (/ RTL) metrics on the test
    split (the teacher and the float phase's student loaded here), bit-exactness of the emulation against the
    quantised model, trigger operating points, provenance; `extras` adds what only one route knows. Writes
    `<out>/emulation.json`."""
    labels, quantised, emulated = outputs["labels"], outputs["quantised"], outputs["emulated"]
    rtl, rtl_out = outputs["rtl"]
    size = config["fpga"]["sizes"].get(student, {})
    float_student = load_student(student, out / "float" / "checkpoint.pt", test_files, size, None)
    teacher_model, teacher_info = load_teacher(teacher_file)
    agree = emulated.argmax(1) == quantised.argmax(1)
    diff = np.abs(emulated - quantised)
    classes = list(read_meta(test_files).classes)
    device = torch.device("cpu")
    probs = {
        "float_teacher": predict(teacher_model, test_files, cfg, device)[0],
        "float_student": predict(float_student, test_files, cfg, device)[0],
        "quantised_student": _softmax(quantised),
        "emulation": _softmax(emulated),
    }
    metrics = {k: classification_metrics(p, labels, classes) for k, p in probs.items()}
    if rtl_out is not None:  # on the RTL-simulated jets only (`n` says how many)
        metrics["rtl"] = classification_metrics(_softmax(rtl_out), labels[: len(rtl_out)], classes)
    teacher_right = probs["float_teacher"].argmax(1) == labels
    ratios = {
        k: accuracy_ratio(p.argmax(1) == labels, teacher_right)
        for k, p in probs.items()
        if k != "float_teacher"
    }
    if rtl_out is not None:
        ratios["rtl"] = accuracy_ratio(
            rtl_out.argmax(1) == labels[: len(rtl_out)], teacher_right[: len(rtl_out)]
        )
    rates = tuple(config["fpga"].get("trigger_rates", DEFAULT_RATES))
    teacher_log_p = np.log(np.clip(probs["float_teacher"], 1e-30, None))
    trigger = operating_points(emulated.astype(np.float64), labels, classes, rates, reference=teacher_log_p)
    result = {
        "student": student,
        "n_test": len(labels),
        "argmax_agreement": float(agree.mean()),
        "n_argmax_disagree": int((~agree).sum()),
        "n_output_differ": int((diff.max(1) > 0).sum()),
        "max_abs_output_diff": float(diff.max()),
        "bit_exact": bool(diff.max() == 0),
        **extras,
        "rtl": rtl,
        "summary": {k: {m: v[m] for m in SUMMARY_KEYS} for k, v in metrics.items()},
        "ratio_to_teacher": ratios,  # accuracy / the teacher's on the same jets, paired (delta-method) SE
        "metrics": metrics,
        "trigger": trigger,
        "compile_s": round(timing["compile_s"], 3),
        "emulation_jets_per_s": round(timing["emulation_jets_per_s"], 1),
        "hls": vars(HLSSettings.from_dict(config["fpga"]["hls"])),
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
    rtl_note = (
        f", RTL bit-exact {rtl['vs_emulation']['bit_exact']} on {rtl['vs_emulation']['jets']} jets"
        if "vs_emulation" in rtl else f", RTL {rtl.get('simulation', rtl['status'])}"
    )  # fmt: skip
    print(
        f"{student}: emulation agreement {result['argmax_agreement']:.4%} on {len(labels)} jets, "
        f"max |diff| {result['max_abs_output_diff']:.3g}, compile {timing['compile_s']:.1f} s{rtl_note}",
        flush=True,
    )
    return result


def open_source_estimate(
    route: Route,
    qat: torch.nn.Module,
    spec: CompressSpec,
    hls: HLSSettings,
    flow: OpenFlowSettings,
    out: Path,
) -> dict[str, Any]:
    """Verilog of the student, yosys synth_xilinx of it; labelled as an open-source estimate."""
    label = "open-source estimate (da4ml Verilog + yosys synth_xilinx; no place and route)"
    if not flow.enabled:
        return {"status": "skipped", "label": label, "reason": "fpga.open_flow.enabled is false"}
    try:
        summary, _ = route.rtl(qat, spec, hls, flow, out)
    except ValueError as exc:
        return {"status": "skipped", "label": label, "reason": str(exc)}
    if summary["status"] == "skipped":
        return {**summary, "label": label}
    result: dict[str, Any] = {
        "label": label,
        "latency_cycles": summary["latency_cycles"],
        "latency_ns": summary["latency_ns"],
        "interval_cycles": summary["interval_cycles"],
        "pipeline_stages": summary["pipeline_stages"],
        "adders_per_stage": flow.adders_per_stage,
        "da4ml_cost_estimate_luts": summary["da4ml_cost_estimate_luts"],
        "clock_period_ns": hls.clock_period,
    }
    if not flow.yosys:
        return {"status": "written", **result, "reason": "fpga.open_flow.yosys is false"}
    if 0 < flow.yosys_max_luts < result["da4ml_cost_estimate_luts"]:
        reason = (f"yosys not run: da4ml estimates {result['da4ml_cost_estimate_luts']} LUTs, above "
                  f"fpga.open_flow.yosys_max_luts = {flow.yosys_max_luts}")  # fmt: skip
        return {"status": "written", **result, "reason": reason}
    family = family_of(hls.part) if flow.family == "auto" else flow.family
    synth = synthesise_verilog(summary["verilog"], "jet_student", family, out / "yosys", hls.clock_period,
                               flow.lut_level_ns, flow.carry_level_ns, flow.yosys_timeout_s)  # fmt: skip
    return {**synth, **result} if synth["status"] == "done" else {**result, **synth}


def tool_versions() -> dict[str, str | None]:
    """Versions of every tool the FPGA stage may use (None: not installed / not on PATH)."""
    from importlib.metadata import PackageNotFoundError, version

    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"hls4ml": package("hls4ml"), "da4ml": package("da4ml"), "verilator": tool_version("verilator"),
            "yosys": tool_version("yosys")}  # fmt: skip


def synthesise_student(
    config: dict[str, Any], student: str, test_files: list[str], out_dir: str | Path
) -> dict[str, Any]:
    """`<out>/synthesis.json`: the open-source estimate and the vendor report, or why either is missing."""
    fpga, out = config["fpga"], Path(out_dir)
    spec, hls = CompressSpec.from_dict(fpga["compress"]), HLSSettings.from_dict(fpga["hls"])
    flow = OpenFlowSettings.from_dict(fpga.get("open_flow", {}))
    synthesis = fpga["synthesis"]
    size = fpga["sizes"].get(student, {})
    route = route_of(student, size)
    qat, _ = load_firmware_student(student, out, test_files, size, spec)

    def make_model() -> Any:
        return route.hls_model(qat, spec, hls, out / "synth", compile=False)[0]

    vendor = synthesise(make_model, hls.backend, bool(synthesis.get("vendor", False)),
                        bool(synthesis["required"]), bool(synthesis.get("vsynth", False)))  # fmt: skip
    print(f"{student}: open-source flow (Verilog, yosys) -> {out / 'synth' / 'rtl'}", flush=True)
    open_source = open_source_estimate(route, qat, spec, hls, flow, out / "synth" / "rtl")
    result = {
        "student": student,
        "vendor": vendor,
        "open_source": open_source,
        "tools": tool_versions(),
        "hls": vars(hls),
        "open_flow": vars(flow),
    }
    write_json_atomic(out / "synthesis.json", result)
    res = open_source.get("resources", {})
    numbers = (
        f"({open_source['reason']})"
        if open_source["status"] == "skipped"
        else f"LUT {res.get('LUT')}, FF {res.get('FF')}, latency {open_source.get('latency_cycles')} cycles "
        f"= {open_source.get('latency_ns')} ns, II 1"
        + (f" ({open_source['reason']})" if "reason" in open_source else "")
    )
    print(
        f"{student}: vendor synthesis {vendor['status']}"
        + (f" ({vendor['reason']})" if "reason" in vendor else "")
        + f"; open-source {open_source['status']}: {numbers}",
        flush=True,
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
    emulation_files: list[str],
    synthesis_files: list[str],
    accuracy_out: str,
    synthesis_out: str,
    headline_out: str | None = None,
    trigger_out: str | None = None,
    pareto_out: str | None = None,
    pareto_plot: str | None = None,
) -> None:
    """accuracy.csv: per student, the four models' accuracy / AUC, agreement, operations;
    synthesis.csv: latency, II and resources per student (or the skip reason); headline_out: the report
    front page's line per student; trigger_out: per student, signal class and background rate, the
    firmware threshold and the signal efficiency (`fpga.trigger`); pareto_out / pareto_plot: firmware
    accuracy against LUTs per student and the front (`pareto.py`)."""
    emulations = [json.loads(Path(p).read_text()) for p in emulation_files]  # each file read once
    syntheses = [json.loads(Path(p).read_text()) for p in synthesis_files]
    rows = []
    for e in emulations:
        teacher_acc = e["summary"]["float_teacher"]["accuracy"]
        for name in ACCURACY_ROWS:
            s = e["summary"][name]
            rows.append({
                "student": e["student"], "model": name, "accuracy": f"{s['accuracy']:.4f}",
                "macro_auc": f"{s['macro_auc']:.4f}" if s["macro_auc"] is not None else "",
                "accuracy_over_teacher": f"{s['accuracy'] / teacher_acc:.4f}" if teacher_acc else "",
                "accuracy_over_teacher_se": _ratio_se(e, name),
                "n_test": s["n"], "argmax_agreement": f"{e['argmax_agreement']:.6f}",
                "max_abs_output_diff": f"{e['max_abs_output_diff']:.3g}",
                "multiplications": e["operations"]["totals"].get("multiplications", 0),
                "nonzero_weights": e["operations"]["totals"].get("nonzero_weights", 0),
            })  # fmt: skip
    write_text_atomic(accuracy_out, _csv(rows))
    srows = [_synthesis_row(s) for s in syntheses]
    keys = list(dict.fromkeys(k for r in srows for k in r))
    write_text_atomic(synthesis_out, _csv([{k: r.get(k, "") for k in keys} for r in srows]))
    if trigger_out:
        trows = [r for e in emulations for r in table_rows(e["student"], e.get("trigger") or {})]
        write_text_atomic(trigger_out, _csv(trows))
    if headline_out:
        write_text_atomic(headline_out, headline_rst(emulations, syntheses))
    if pareto_out or pareto_plot:
        prows = pareto_rows(emulations, syntheses)
        if pareto_out:
            write_text_atomic(pareto_out, _csv(prows))
        if pareto_plot:
            plot_pareto(prows, pareto_plot)


def _ratio_se(emulation: dict[str, Any], model: str) -> str:
    """The paired SE of a model's accuracy ratio to the teacher ("" where not recorded, or the teacher)."""
    ratio = (emulation.get("ratio_to_teacher") or {}).get(model)
    return f"{ratio['se']:.4f}" if ratio else ""


def headline_rst(emulations: list[dict[str, Any]], syntheses: list[dict[str, Any]]) -> str:
    """The report front page's firmware lines, one per student: firmware accuracy against the teacher, whether
    emulation and RTL match PyTorch bit for bit, resources, latency and II (vendor report when there is one,
    else the open-source estimate, labelled)."""
    synth = {s["student"]: s for s in syntheses}
    lines = ["**Firmware students** (accuracy on the test jets; the float teacher for scale):", ""]
    for e in emulations:
        acc, teacher = e["summary"]["emulation"]["accuracy"], e["summary"]["float_teacher"]["accuracy"]
        rtl = (e.get("rtl") or {}).get("vs_quantised_pytorch") or {}
        exact = "emulation bit-exact" if e.get("bit_exact") else "emulation NOT bit-exact"
        exact += (
            ", RTL bit-exact" if rtl.get("bit_exact") else (", RTL differs" if rtl else ", no RTL simulated")
        )
        hw = _hardware_summary(synth.get(e["student"], {}))
        se = (e.get("ratio_to_teacher") or {}).get("emulation", {}).get("se")
        ratio = f"{acc / teacher:.2f}{f' +- {se:.2f}' if se is not None else ''} x teacher {teacher:.3f}"
        lines.append(f"- ``{e['student']}``: accuracy {acc:.3f} ({ratio}); {exact}; {hw}.")
    return "\n".join(lines) + "\n"


def _hardware_summary(s: dict[str, Any]) -> str:
    """Resources, latency and II of a synthesis.json: the vendor report, else the open-source estimate."""
    v, o = s.get("vendor", {}), s.get("open_source", {})
    if v.get("status") == "done":
        res = v.get("resources") or {}
        latency = (v.get("latency_ns") or {}).get("max", "?")
        ii = (v.get("interval_cycles") or {}).get("max", "?")
        luts = f"{res.get('LUT', '?')} LUT, {res.get('DSP', '?')} DSP"
        return f"{luts}, latency {latency} ns, II {ii} (vendor report)"
    timing = f"latency {o.get('latency_ns', '?')} ns, II {o.get('interval_cycles', '?')}"
    if o.get("status") == "done":
        res = o.get("resources") or {}
        luts = f"{res.get('LUT', '?')} LUT, {res.get('DSP', '?')} DSP"
        return f"{luts}, {timing} (open-source estimate: yosys, no place and route)"
    if o.get("da4ml_cost_estimate_luts"):
        return f"~{o['da4ml_cost_estimate_luts']} LUT (da4ml estimate; yosys not run), {timing}"
    return "not synthesised: " + (o.get("reason") or v.get("reason") or "no synthesis result")


def _synthesis_row(s: dict[str, Any]) -> dict[str, Any]:
    """A synthesis.csv row: the vendor report (vendor_*) beside the open-source estimate (open_*)."""
    v, o = s.get("vendor", {}), s.get("open_source", {})
    row: dict[str, Any] = {"student": s["student"], "vendor_status": v.get("status", ""),
                           "vendor_reason": v.get("reason", "")}  # fmt: skip
    for k in ("latency_cycles", "latency_ns", "interval_cycles"):
        for kk, val in (v.get(k) or {}).items():
            row[f"vendor_{k}_{kk}"] = val
    if "timing_met" in v:
        row["vendor_timing_met"] = v["timing_met"]
    for k, val in (v.get("resources") or {}).items():
        row[f"vendor_{k}"] = val
        row[f"vendor_{k}_percent"] = v["utilisation_percent"].get(k, "")
    row["open_status"] = o.get("status", "")
    row["open_reason"] = o.get("reason", "")
    for k, val in (o.get("resources") or {}).items():
        row[f"open_{k}"] = val
    for k in ("latency_cycles", "latency_ns", "interval_cycles"):
        row[f"open_{k}"] = o.get(k, "")
    timing = o.get("timing_estimate") or {}
    row["open_critical_path_ns"] = timing.get("critical_path_ns", "")
    row["open_timing_met"] = timing.get("timing_met", "")
    return row
