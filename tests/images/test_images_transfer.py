"""Transfer learning of the CNN: torchvision-format files (built from our own ResNet18 layout: the names are
torchvision's), jetfm checkpoints, the channel adaptation, clear errors, and fine-tuning through the one
training loop starting from exactly the checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.train import make_dataset

from jetfm.images.transfer import ImageFineTune, adapt_input_conv, load_pretrained
from jetfm.models import build_model
from jetfm.train.config import TrainConfig
from jetfm.train.loop import train

RGB = ["total", "charged", "photon"]  # three channels: the layout of a torchvision RGB file


def torchvision_file(path: Path, channels: list[str] = RGB) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's ResNet18 format (1000-class head, no num_batches_tracked, like the
    published files), saved to `path`."""
    torch.manual_seed(7)
    model = build_model("cnn", 17, 8, 1000, preset="resnet18", channels=channels)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return state


def test_torchvision_weights_load_with_adapted_input_conv(tmp_path: Path) -> None:
    state = torchvision_file(tmp_path / "resnet18.pth")
    model = build_model("cnn", 17, 8, 10, preset="resnet18")  # 4 channels
    head = model.fc.weight.detach().clone()
    report = load_pretrained(model, tmp_path / "resnet18.pth")
    assert report["kind"] == "torchvision" and report["input_conv_adapted"]
    rgb = state["conv1.weight"]
    want = torch.cat([rgb, rgb[:, :1]], 1) * 0.75  # RGB repeated to 4 channels, x 3/4
    torch.testing.assert_close(model.conv1.weight.detach(), want)
    for k, v in model.state_dict().items():
        if k.startswith("fc."):
            continue
        if k in state and k != "conv1.weight":
            assert torch.equal(v, state[k]), k
    assert torch.equal(model.fc.weight, head)  # the head stays the model's own
    # one channel: the filters are summed
    assert torch.equal(adapt_input_conv(rgb, 1), rgb.sum(1, keepdim=True))
    # for a multiple of 3 channels a uniform input gives the RGB network's first-layer response
    x3, x6 = torch.ones(1, 3, 8, 8), torch.ones(1, 6, 8, 8)
    torch.testing.assert_close(
        torch.nn.functional.conv2d(x6, adapt_input_conv(rgb, 6)), torch.nn.functional.conv2d(x3, rgb)
    )


def test_wrong_channel_count_names_both_shapes(tmp_path: Path) -> None:
    """A 3-channel jetfm checkpoint into a 4-channel model; a 2-channel torchvision-format file."""
    data = make_dataset(tmp_path / "h5", n_train=128, n_val=64, n_test=64, max_particles=32)
    cfg = TrainConfig(model="cnn", size={"preset": "tiny", "channels": RGB}, max_steps=2, batch_size=32,
                      warmup_steps=1, eval_every=2, progress=False, device="cpu")  # fmt: skip
    train(cfg, data["train"], data["val"], None, tmp_path / "src")
    four = build_model("cnn", 17, 8, 10, preset="tiny")
    with pytest.raises(ValueError, match=r"\(8, 3, 3, 3\), the model expects \(8, 4, 3, 3\)") as err:
        load_pretrained(four, tmp_path / "src" / "checkpoint.pt")
    assert "conv1.weight" in str(err.value) and "src/checkpoint.pt" in str(err.value)
    torchvision_file(tmp_path / "two.pth", ["total", "charged"])
    with pytest.raises(ValueError, match=r"\(64, 2, 7, 7\), the model expects \(64, 4, 7, 7\)"):
        load_pretrained(build_model("cnn", 17, 8, 10, preset="resnet18"), tmp_path / "two.pth")
    # another CNN size
    with pytest.raises(ValueError, match=r"do not fit the model.*unexpected .*layer1\.1\.conv1\.weight"):
        load_pretrained(build_model("cnn", 17, 8, 10, preset="tiny", channels=RGB), tmp_path / "two.pth")
    with pytest.raises(FileNotFoundError, match=r"absent\.pth does not exist"):
        load_pretrained(four, tmp_path / "absent.pth")


class RecordingStart(ImageFineTune):
    """Snapshots the model's tensors at the first loss evaluation (before any optimiser step)."""

    start: dict[str, torch.Tensor] | None = None

    def loss(self, model, batch, device):  # type: ignore[no-untyped-def]
        if self.start is None:
            self.start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return super().loss(model, batch, device)


def test_finetuning_starts_from_exactly_the_checkpoint(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "h5", n_train=128, n_val=64, n_test=64, max_particles=32)
    base = dict(model="cnn", size={"preset": "tiny"}, batch_size=32, warmup_steps=1, eval_every=3,
                progress=False, device="cpu")  # fmt: skip
    train(TrainConfig(**base, max_steps=3, seed=1), data["train"], data["val"], None, tmp_path / "src")
    source = torch.load(tmp_path / "src" / "checkpoint.pt", weights_only=True)["model"]
    objective = RecordingStart("source", 1.0, tmp_path / "src" / "checkpoint.pt")
    out = train(TrainConfig(**base, max_steps=2, seed=2), data["train"], data["val"], data["test"],
                tmp_path / "ft", objective=objective)  # fmt: skip
    assert objective.start is not None
    body = [k for k in source if not k.startswith("fc.")]
    assert all(torch.equal(objective.start[k], source[k]) for k in body)
    assert not torch.equal(objective.start["fc.weight"], source["fc.weight"])  # fresh head
    # and training moved on from there
    final = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(final["model"]["conv1.weight"], source["conv1.weight"])
    init = out["metrics"]["pretrained"]
    assert init["kind"] == "jetfm" and init["tensors_loaded"] == len(body)
    assert not init["image_settings_differ"]
