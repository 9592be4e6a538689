"""hls4ml conversion of a compressed student, `compile()`, and the emulation proof against PyTorch.

The firmware is the student's `core` (no softmax: hls4ml's lookup-table softmax can flip the argmax,
hls4ml#1443/#1512; the trigger decision needs the logits' argmax only). Precisions: the input, weight, bias
and ReLU-output types are the compression spec's; every Dense/Conv accumulator and result and the pooling
accumulator are set wide enough to be exact (`exact_types`), so the only roundings are the ones the
quantised PyTorch model performs, and the emulation is bit-exact (checked, not assumed: any difference is
reported with the first differing layer from hls4ml's `trace()`).
"""

from __future__ import annotations

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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HLSSettings:
        return cls(**strict_fields(cls, values, "fpga.hls"))


def _wide(frac: int, integer: int) -> str:
    """A signed type with `frac` fraction and `integer` integer bits, exact for the values it will hold."""
    return f"ap_fixed<{frac + integer},{integer}>"


def exact_types(core: nn.Sequential, spec: CompressSpec) -> dict[int, dict[str, str]]:
    """Per core index: hls4ml precisions. Quantising types from the spec; accumulators and results wide
    enough that no rounding or overflow happens (fraction bits add in a product; integer bits grow by
    log2 of the number of summed terms, plus one for the bias)."""
    t = spec.types()
    x: FixedType = t["input"]
    frac, integer = x.frac, x.integer + int(not x.signed)
    out: dict[int, dict[str, str]] = {}
    for i, m in enumerate(core):
        if isinstance(m, nn.Linear | nn.Conv1d):
            n_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            frac = max(frac + t["weight"].frac, t["bias"].frac)
            integer = max(integer + t["weight"].integer, t["bias"].integer) + math.ceil(math.log2(n_in)) + 1
            wide = _wide(frac, integer)
            out[i] = {"weight": t["weight"].hls(), "bias": t["bias"].hls(), "accum": wide, "result": wide}
        elif isinstance(m, nn.ReLU):
            a = t["activation"]
            out[i] = {"result": a.hls()}
            frac, integer = a.frac, a.integer + int(not a.signed)
        elif isinstance(m, nn.AvgPool1d):
            k = m.kernel_size[0] if isinstance(m.kernel_size, tuple) else m.kernel_size
            if k & (k - 1):
                raise ValueError(f"AvgPool1d over {k} particles: use a power of two (exact division)")
            frac, integer = frac + int(math.log2(k)), integer + int(math.log2(k)) + 1
            out[i] = {"accum": _wide(frac, integer), "result": _wide(frac, integer)}
        elif isinstance(m, nn.Flatten):
            out[i] = {"result": _wide(frac, integer)}
    return out


def hls_config(
    core: nn.Sequential, input_shape: tuple[int, ...], spec: CompressSpec, hls: HLSSettings
) -> dict:
    import hls4ml

    config = hls4ml.utils.config_from_pytorch_model(
        core, input_shape, granularity="name", backend=hls.backend, default_reuse_factor=hls.reuse_factor,
    )  # fmt: skip
    config["Model"]["Strategy"] = hls.strategy
    types = exact_types(core, spec)
    for name, layer in config["LayerName"].items():
        layer["Trace"] = True
        index = name.lstrip("_")
        if index.isdigit() and int(index) in types:
            layer.setdefault("Precision", {}).update(types[int(index)])
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
    t0 = time.perf_counter()
    if compile:
        model.compile()
    else:
        model.write()
    return model, time.perf_counter() - t0


def quantised_inputs(student: nn.Module, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """The firmware's inputs: the student's features stored in its input type (float64, exact)."""
    with torch.no_grad():
        feats = [student.features(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
                 for b in batches]  # fmt: skip
        x = torch.cat(feats).double()
        return student.input_quant.t.quantize(x).numpy()


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
