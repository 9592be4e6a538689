"""Where to build jet images: in the CNN's forward (now) or stored by preprocessing? Measures both costs.

In the forward: time of `jet_images` on a training batch vs the whole CNN training step (forward, backward,
AdamW) for the registry presets. Stored: bytes per jet of an (N, C, size, size) float32 image array written
with the shards' gzip-1 + shuffle, and the time to read one batch of it back (what the loader would add),
next to the time to build the same batch.

    .venv/bin/python bench/images.py --shard results/h5/tiny/train/0000.h5 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from jetfm.models import build_model
from jetfm.models.jetimage import jet_images
from jetfm.train.data import H5JetStream, make_loader


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of fn() over `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(preset: str, batch: dict[str, torch.Tensor], shard: str, repeats: int) -> dict[str, object]:
    """Build and train-step times of one preset on `batch`; the stored alternative's size and read time."""
    f, v, m, y = batch["part_features"], batch["part_vectors"], batch["part_mask"], batch["label"]
    model = build_model("cnn", f.shape[-1], 14, 10, preset=preset)
    spec = model.image
    opt = torch.optim.AdamW(model.parameters())

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(f, v, m, None), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    build = timed(lambda: jet_images(f, v, m, spec), repeats)
    step_s = timed(step, max(3, repeats // 3))
    # the stored alternative: images of the whole shard, gzip-1 + shuffle like the shards, chunks of 64 jets
    rows = H5JetStream([shard], 256, shuffle=False, drop_last=False)
    images = np.concatenate(
        [
            jet_images(b["part_features"], b["part_vectors"], b["part_mask"], spec).numpy()
            for b in make_loader(rows)
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.h5"
        with h5py.File(path, "w") as h:
            h.create_dataset("images", data=images, chunks=(64, *images.shape[1:]), compression="gzip",
                             compression_opts=1, shuffle=True)  # fmt: skip
        per_jet = path.stat().st_size / len(images)

        def read() -> None:
            with h5py.File(path, "r") as h:
                h["images"][: len(y)]

        read_s = timed(read, repeats)
    shape = f"{len(spec.channels)}x{spec.size}x{spec.size}"
    return {"shape": shape, "build": build, "step": step_s, "bytes_per_jet": per_jet, "read": read_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", default="results/h5/tiny/train/0000.h5")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "resnet18"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stream = H5JetStream([args.shard], args.batch, seed=0)
    batch = next(iter(make_loader(stream)))
    m = batch["part_mask"]
    print(f"batch {args.batch} jets, {m.shape[1]} particle slots (mean {m.sum(1).float().mean():.0f}), "
          f"{args.threads} threads")  # fmt: skip
    print(f"{'preset':>9} {'image':>10} {'build ms':>9} {'step ms':>8} {'build/step':>10} "
          f"{'stored B/jet':>12} {'read ms':>8}")  # fmt: skip
    for preset in args.presets:
        row = measure(preset, batch, args.shard, args.repeats)
        ms = {k: row[k] * 1e3 for k in ("build", "step", "read")}
        print(f"{preset:>9} {row['shape']:>10} {ms['build']:9.2f} {ms['step']:8.1f} "
              f"{ms['build'] / ms['step']:10.3f} {row['bytes_per_jet']:12.0f} {ms['read']:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
