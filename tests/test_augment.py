"""data.augment: batch-wise, seeded by (seed, epoch, step) only, shape-preserving, and
refused where it cannot apply."""
from __future__ import annotations

import pytest
import torch

import netspec
from netspec import data as D
from netspec.data.augment import build, generator_for
from netspec.kinds.network import setup

SPEC = """
name: a
seed: 3
data:
  source: {synthetic_classification: 40}
  augment: AUGMENT
model:
  input_shape: SHAPE
  layers: [flatten, {linear: 2}]
loss: cross_entropy
optimizer: adam
train: {epochs: 1, threads: 1}
"""


def spec_with(write_spec, augment: str, shape="[2, 8, 8]"):
    return netspec.load(write_spec(SPEC.replace("AUGMENT", augment).replace("SHAPE", shape)))


ALL = "[{random_crop: {padding: 2, fill: reflect}}, horizontal_flip, vertical_flip, " \
      "{affine: {degrees: 20, translate: 0.1, scale: [0.9, 1.1]}}, rotation, {noise: 0.1}]"


def test_augmentation_is_a_function_of_seed_epoch_and_step(write_spec):
    fn = build(spec_with(write_spec, ALL))
    x = torch.rand(16, 2, 8, 8)
    a = fn(x, generator_for(3, 2, 5, "cpu"))
    assert a.shape == x.shape and a.dtype == x.dtype and not torch.equal(a, x)
    assert torch.equal(a, fn(x.clone(), generator_for(3, 2, 5, "cpu")))  # resumed: the same draws
    assert not torch.equal(a, fn(x, generator_for(3, 2, 6, "cpu")))  # the next step: other draws
    state = torch.get_rng_state()
    fn(x, generator_for(3, 2, 5, "cpu"))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never touched


def test_each_transformation(write_spec):
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    g = lambda: generator_for(0, 1, 1, "cpu")  # noqa: E731
    flip = build(spec_with(write_spec, "[{horizontal_flip: 1.0}]"))(x, g())
    assert torch.equal(flip, x.flip(-1))
    assert torch.equal(build(spec_with(write_spec, "[{horizontal_flip: 0.0}]"))(x, g()), x)
    crop = build(spec_with(write_spec, "[{random_crop: 1}]"))(x, g())
    for b in range(2):  # each sample is its own shift of the image by at most one pixel, zeros outside
        shifted = [torch.nn.functional.pad(x[b], (1, 1, 1, 1))[:, i:i + 4, j:j + 6] for i in range(3) for j in range(3)]
        assert any(torch.equal(crop[b], s) for s in shifted)
    torch.testing.assert_close(build(spec_with(write_spec, "[{affine: {degrees: 0}}]"))(x, g()), x)  # identity
    noisy = build(spec_with(write_spec, "[{noise: 0.5}]"))(torch.zeros(64, 1, 16, 16), g())
    assert abs(noisy.std().item() - 0.5) < 0.03
    rot = build(spec_with(write_spec, "[{rotation: 90}]"))(torch.ones(8, 1, 9, 9), g())
    assert rot.shape == (8, 1, 9, 9) and rot.min() >= 0 and rot.max() <= 1.0001


def test_image_augmentation_on_flat_data_is_refused_at_its_line(write_spec):
    spec = spec_with(write_spec, "[{noise: 0.1}, horizontal_flip]", "[8]")
    with pytest.raises(netspec.SpecError) as e:
        setup(spec, D.load(spec))
    (p,) = e.value.problems
    assert p.path == "data.augment.1" and "images [channels, height, width]" in p.message
    assert p.line == 5  # (the augment line)


def test_dataset_carries_the_augmentation(write_spec):
    d = D.load(spec_with(write_spec, "[{noise: 0.1}]"))
    assert callable(d.augment)
    assert D.load(spec_with(write_spec, "[]")).augment is None


def test_augmented_training_resumes_bit_exactly(write_spec, tmp_path):
    text = SPEC.replace("AUGMENT", "[{random_crop: 1}, horizontal_flip, {rotation: 10}, {noise: 0.1}]") \
        .replace("SHAPE", "[2, 8, 8]").replace("epochs: 1", "epochs: 1, batch_size: 8")
    path = write_spec(text)

    def weights(out, epochs, resume=False):
        netspec.train(netspec.load(path, [f"train.epochs={epochs}"]), out=out, resume=resume, progress=False)
        return torch.load(out / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]

    straight = weights(tmp_path / "one", 2)
    weights(tmp_path / "two", 1)
    resumed = weights(tmp_path / "two", 2, resume=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # and the augmentation did change training: without it, other weights
    plain = netspec.load(path, ["train.epochs=2", "data.augment=[]"])
    netspec.train(plain, out=tmp_path / "plain", progress=False)
    bare = torch.load(tmp_path / "plain" / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(straight[k], bare[k]) for k in straight)
