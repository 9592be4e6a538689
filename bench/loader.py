"""Loader throughput by shard layout: padded-to-128 + gzip (layout 1) vs packed (layout 2), same jets.

The training loader (`H5JetStream` + `make_loader`) over one shard of each layout holding the same jets
(JetClass-like multiplicities, mean ~45 of 128 slots: bench/train.py's data), with 0 and `--workers`
DataLoader workers, interleaved (A, B, A, B, ...) and the best of `--repeats` kept, so a busy machine
slows all alike. Prints jets/s per layout and its ratio to padded + gzip; the batches are the same
(tests/preprocess/test_layout.py), only the bytes on disk and the decoding differ.

    .venv/bin/python bench/loader.py [--jets 32768] [--workers 2 4 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import make_data

from jetfm import shards
from jetfm.train.data import H5JetStream, make_loader


def pack(padded: str, out: Path, compression: str) -> str:
    """The packed (layout 2) copy of a padded shard, written through the one row writer."""
    with h5py.File(padded, "r") as src, h5py.File(out, "w") as dst:
        keys = shards.row_keys(src)
        n = src["label"].shape[0]
        rows = shards.RowWriter(dst, shards.PACKED, shards.read_rows(src, 0, 0, keys), 256, compression)
        for a in range(0, n, 4096):
            rows.append(shards.read_rows(src, a, min(a + 4096, n), keys))
        for k, v in src.attrs.items():
            if k not in dst.attrs:
                dst.attrs[k] = v
    return str(out)


def rate(path: str, batch: int, workers: int) -> float:
    """Jets/s of one full epoch through the training loader (shuffle buffer, trimming, bucketing off)."""
    stream = H5JetStream([path], batch, seed=0, block_size=256, shuffle_buffer=4096)
    t = time.perf_counter()
    n = sum(len(b["label"]) for b in make_loader(stream, num_workers=workers))
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jets", type=int, default=32768)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--workers", type=int, nargs="+", default=[2], help="worker counts besides 0 (e.g. 4 8)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        padded = make_data(Path(tmp), args.jets)[0]
        files = {
            "padded + gzip": padded,
            "packed + lzf": pack(padded, Path(tmp) / "lzf.h5", "lzf"),
            "packed + none": pack(padded, Path(tmp) / "none.h5", "none"),
        }
        base = Path(padded).stat().st_size
        print(f"{args.jets} jets, batch {args.batch}; size on disk relative to padded + gzip:")
        print("  " + ", ".join(f"{k} {Path(p).stat().st_size / base:.2f}x" for k, p in files.items()))
        for workers in (0, *args.workers):
            best = dict.fromkeys(files, 0.0)
            for _ in range(args.repeats):
                for name, path in files.items():
                    best[name] = max(best[name], rate(path, args.batch, workers))
            ref = best["padded + gzip"]
            print(
                f"{workers} workers: "
                + ", ".join(f"{k} {v:,.0f} jets/s ({v / ref:.2f}x)" for k, v in best.items())
            )


if __name__ == "__main__":
    main()
