"""hls4ml conversion of a compressed student, `compile()`, and the emulation proof against PyTorch.

The firmware is the student's `core` (no softmax: hls4ml's lookup-table softmax can flip the argmax,
hls4ml#1443/#1512; the trigger decision needs the logits' argmax only). Precisions: the input, weight, bias
and ReLU-output types are the compression spec's; every Dense/Conv accumulator and result and the pooling
accumulator are set wide enough to be exact (`exact_types`), so the only roundings are the ones the
quantised PyTorch model performs, and the emulation is bit-exact (checked, not assumed: any difference is
reported with the first differing layer from hls4ml's `trace()`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jetfm.configkeys import strict_fields
from jetfm.fpga.compress import CompressSpec, FixedType, export_plain


@dataclasses.dataclass(frozen=True)
class HLSSettings:
    """The config's `fpga.hls` section."""

    backend: str = "Vitis"
    part: str = "xcvu13p-flga2577-2-e"
    clock_period: float = 5.0  # ns
    reuse_factor: int = 1
    strategy: str = "Latency"  # Latency | Resource
    io_type: str = "io_parallel"
    # Conv1d particle loop: 0 = fully parallel (ParallelizationFactor = particles, n_partitions = 1). Any
    # n_partitions > 1 makes hls4ml force a top-level DATAFLOW and Φ then runs the partitions one by one.
    parallelization_factor: int = 0
    # Top-level style: "pipeline" (#pragma HLS PIPELINE II=reuse_factor), "dataflow", or "auto" (hls4ml's).
    pipeline_style: str = "pipeline"

    def __post_init__(self) -> None:
        if self.pipeline_style not in ("pipeline", "dataflow", "auto"):
            raise ValueError(f"fpga.hls.pipeline_style {self.pipeline_style!r}: pipeline, dataflow or auto")
        if self.parallelization_factor < 0:
            raise ValueError("fpga.hls.parallelization_factor must be >= 0 (0 = fully parallel)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HLSSettings:
        return cls(**strict_fields(cls, values, "fpga.hls"))


def _wide(frac: int, integer: int) -> str:
    """A signed type with `frac` fraction and `integer` integer bits, exact for the values it will hold."""
    return f"ap_fixed<{frac + integer},{integer}>"


def signed_integer_bits(lo: float, hi: float, frac: int) -> int:
    """Integer bits (sign included) of the narrowest signed type with `frac` fraction bits that holds
    [lo, hi]."""
    need = max(-lo, hi + 2.0**-frac, 2.0**-frac)
    return max(1, math.ceil(math.log2(need)) + 1)


def _affine_bounds(w: np.ndarray, b: np.ndarray | None, lo: np.ndarray, hi: np.ndarray):
    """Per-output interval of W x + b for x in the box [lo, hi] (W is (out, in))."""
    low = np.minimum(w * lo, w * hi).sum(1)
    high = np.maximum(w * lo, w * hi).sum(1)
    if b is not None:
        low, high = low + b, high + b
    return low, high


def exact_types(core: nn.Sequential, spec: CompressSpec) -> dict[int, dict[str, str]]:
    """Per core index: hls4ml precisions. Quantising types from the spec; accumulators and results exact.

    Fraction bits: a product has f_in + f_w, so nothing rounds. Integer bits: by interval analysis over the
    actual (quantised, pruned) weights of `core`: each output's range is the sum of |w| times the input's
    range plus the bias, over every input in its type (ReLU outputs in the activation type), so nothing
    overflows either. Every partial sum lies in the full sum's range (each term's range contains 0), so the
    accumulator that holds the result holds every step. Worst-case sizing (I_in + I_w + log2 n_in + 1) is
    what this replaces: it wastes bits on weights that are small or pruned."""
    t = spec.types()
    x: FixedType = t["input"]
    frac = x.frac
    lo = hi = None  # per-feature bounds; None = the input type's range, broadcast
    lo_s, hi_s = x.lo, x.hi
    out: dict[int, dict[str, str]] = {}
    for i, m in enumerate(core):
        if isinstance(m, nn.Linear | nn.Conv1d):
            w = m.weight.detach().double().numpy().reshape(m.weight.shape[0], -1)
            b = None if m.bias is None else m.bias.detach().double().numpy()
            n_in = w.shape[1]
            lo_v = np.full(n_in, lo_s) if lo is None else lo
            hi_v = np.full(n_in, hi_s) if hi is None else hi
            low, high = _affine_bounds(w, b, lo_v, hi_v)
            frac = max(frac + t["weight"].frac, t["bias"].frac if b is not None else 0)
            integer = signed_integer_bits(float(low.min()), float(high.max()), frac)
            wide = _wide(frac, integer)
            out[i] = {"weight": t["weight"].hls(), "bias": t["bias"].hls(), "accum": wide, "result": wide}
            lo, hi = low, high
        elif isinstance(m, nn.ReLU):
            a = t["activation"]
            out[i] = {"result": a.hls()}
            frac = a.frac
            lo = np.zeros_like(hi) if hi is not None else None
            hi = np.clip(hi, 0.0, a.hi) if hi is not None else None
            lo_s, hi_s = 0.0, a.hi
        elif isinstance(m, nn.AvgPool1d):
            k = m.kernel_size[0] if isinstance(m.kernel_size, tuple) else m.kernel_size
            if k & (k - 1):
                raise ValueError(f"AvgPool1d over {k} particles: use a power of two (exact division)")
            shift = int(math.log2(k))
            low = float(lo.min()) if lo is not None else lo_s
            high = float(hi.max()) if hi is not None else hi_s
            frac += shift  # the mean of k values needs log2(k) more fraction bits
            accum = _wide(frac, signed_integer_bits(k * low, k * high, frac))
            out[i] = {"accum": accum, "result": _wide(frac, signed_integer_bits(low, high, frac))}
        elif isinstance(m, nn.Flatten):
            low = float(lo.min()) if lo is not None else lo_s
            high = float(hi.max()) if hi is not None else hi_s
            out[i] = {"result": _wide(frac, signed_integer_bits(low, high, frac))}
    return out


def hls_config(
    core: nn.Sequential, input_shape: tuple[int, ...], spec: CompressSpec, hls: HLSSettings
) -> dict:
    """hls4ml configuration: exact types per layer, the pipeline style and the particle-loop parallelism."""
    import hls4ml

    config = hls4ml.utils.config_from_pytorch_model(
        core, input_shape, granularity="name", backend=hls.backend, default_reuse_factor=hls.reuse_factor,
    )  # fmt: skip
    config["Model"]["Strategy"] = hls.strategy
    if hls.pipeline_style != "auto":
        config["Model"]["PipelineStyle"] = hls.pipeline_style
        if hls.pipeline_style == "pipeline":
            config["Model"]["PipelineInterval"] = hls.reuse_factor
    types = exact_types(core, spec)
    particles = input_shape[-1] if len(input_shape) == 2 else 1
    for name, layer in config["LayerName"].items():
        layer["Trace"] = True
        index = name.lstrip("_")
        if index.isdigit() and int(index) in types:
            layer.setdefault("Precision", {}).update(types[int(index)])
            if isinstance(core[int(index)], nn.Conv1d):  # pointwise: out width = particles
                layer["ParallelizationFactor"] = hls.parallelization_factor or particles
        elif not index.isdigit():  # the input layer
            layer["Precision"] = {"result": spec.types()["input"].hls()}
    return config


def convert(
    core: nn.Sequential,
    input_shape: tuple[int, ...],
    spec: CompressSpec,
    hls: HLSSettings,
    out_dir: str | Path,
    compile: bool = True,
) -> tuple[Any, float]:
    """hls4ml model of the exported core, written to out_dir and (unless not `compile`) compiled;
    returns (model, compile seconds)."""
    import hls4ml

    plain = export_plain(core).float()  # weights and biases of <= 24 bits are exact in float32
    config = hls_config(plain, input_shape, spec, hls)
    model = hls4ml.converters.convert_from_pytorch_model(
        plain, output_dir=str(out_dir), backend=hls.backend, hls_config=config, part=hls.part,
        clock_period=hls.clock_period, io_type=hls.io_type,
    )  # fmt: skip
    return compile_or_write(model, compile)


def compile_or_write(model: Any, compile: bool) -> tuple[Any, float]:
    """hls4ml's C++ emulation library (`compile`) or only the project files; returns the seconds it took."""
    t0 = time.perf_counter()
    if compile:
        model.compile()
    else:
        model.write()
    return model, time.perf_counter() - t0


def firmware_inputs(student: nn.Module, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """The firmware's inputs as the hardware upstream would deliver them: the student's features, float64,
    not yet rounded to the input type (the emulation and the QAT model's input quantiser each round them)."""
    with torch.no_grad():
        feats = [student.features(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
                 for b in batches]  # fmt: skip
        return torch.cat(feats).double().numpy()


def quantised_logits(core: nn.Sequential, x: np.ndarray, record: bool = False) -> Any:
    """The quantised PyTorch model in float64 (exact for these widths); `record`: each layer's output too."""
    core64 = export_plain(core, keep_activation_quant=True)
    outputs: dict[int, np.ndarray] = {}
    with torch.no_grad():
        h = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        for i, m in enumerate(core64):
            h = m(h)
            if record:
                outputs[i] = h.numpy().copy()
    return (h.numpy(), outputs) if record else h.numpy()


def emulate(model: Any, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, float]:
    """C++ emulation logits (float64 I/O: wide result types survive) and jets per second."""
    t0 = time.perf_counter()
    out = [np.asarray(model.predict(np.ascontiguousarray(x[i : i + batch], dtype=np.float64)))
           for i in range(0, len(x), batch)]  # fmt: skip
    dt = time.perf_counter() - t0
    return np.concatenate(out).reshape(len(x), -1), len(x) / max(dt, 1e-9)


def first_disagreement(model: Any, core: nn.Sequential, x: np.ndarray) -> dict[str, Any] | None:
    """Trace the jets `x` through both models; the first core layer whose outputs differ, or None."""
    _, hls_trace = model.trace(np.ascontiguousarray(x, dtype=np.float64))
    _, torch_trace = quantised_logits(core, x, record=True)
    for i, ref in torch_trace.items():
        name = f"_{i}"
        if name not in hls_trace:
            continue
        got = np.asarray(hls_trace[name], dtype=np.float64)
        if ref.ndim == 3:  # PyTorch (N, C, P); hls4ml keeps channels last (N, P, C)
            ref = ref.transpose(0, 2, 1)
        got = got.reshape(ref.shape)
        diff = float(np.abs(got - ref).max())
        if diff > 0:
            return {"layer": name, "module": type(core[i]).__name__, "max_abs_diff": diff, "jets": len(x)}
    return None


def agreement(got: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """How far two models' logits on the same jets agree: argmax, largest difference, bit-exact."""
    diff = np.abs(got - ref)
    return {
        "jets": len(ref),
        "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
        "max_abs_output_diff": float(diff.max()),
        "bit_exact": bool(diff.max() == 0),
    }


def qat_forward(qat: nn.Module, raw: np.ndarray) -> np.ndarray:
    """The QAT model's own forward (its input quantiser, parametrised weights, QuantReLUs) in float64 on the
    unquantised firmware inputs: the model that was trained, not a re-export of it."""
    model = copy.deepcopy(qat).double().eval()
    with torch.no_grad():
        return model.core(model.input_quant(torch.from_numpy(raw))).numpy()
