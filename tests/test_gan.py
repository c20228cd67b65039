"""kind: gan: shapes of both networks, errors at their lines, the alternating steps, label
smoothing, an end-to-end run (image grid, metrics, sampling) and resume."""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netspec
from netspec.kinds import gan as G
from netspec.compiler import materialize
from netspec.kinds import compile_spec, report
from netspec.errors import SpecError
from netspec.infer.commands import sample_run

from conftest import ROOT, run_cli

DCGAN = ROOT / "specs" / "digits_dcgan.yaml"
UPSAMPLE = ROOT / "specs" / "digits_dcgan_upsample.yaml"
CONDITIONAL = ROOT / "specs" / "digits_dcgan_conditional.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One quality-classifier cache for the module's runs, and one thread: these networks
    are tiny, and the machine is shared."""
    cache = tmp_path_factory.mktemp("cache")
    old = {k: os.environ.get(k) for k in ("NETSPEC_CACHE", "NETSPEC_THREADS")}
    os.environ.update(NETSPEC_CACHE=str(cache), NETSPEC_THREADS="1")
    yield dict(os.environ)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """Width, height, colour type and raw pixel rows of a PNG, checking every chunk's CRC."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        tag, body = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", blob[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(tag + body), f"bad CRC in {tag}"
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and b"IEND" in chunks
    return w, h, colour, zlib.decompress(chunks[b"IDAT"])


def line_of(problems, path: str) -> int:
    hits = [p for p in problems if p.path == path]
    assert hits, f"no problem at {path}: {[str(p) for p in problems]}"
    return hits[0].line


def problems_of(text: str, **ctx):
    with pytest.raises(SpecError) as e:
        compile_spec(netspec.load(text), **ctx)
    return e.value.problems


# --- shapes ---
def test_both_networks_shapes_and_report():
    for path in (DCGAN, UPSAMPLE):
        nets = compile_spec(netspec.load(path))
        assert nets["generator"].input_shape == (32,)
        assert nets["generator"].output_shape == (1, 8, 8)
        assert nets["discriminator"].input_shape == (1, 8, 8)
        assert nets["discriminator"].output_shape == (1,)
    types = [r.type for r in compile_spec(netspec.load(UPSAMPLE))["generator"].rows]
    assert "upsample" in types and "conv_transpose2d" not in types
    # conditional: the one-hot label joins the noise, and the sample as 10 extra channels
    nets = compile_spec(netspec.load(CONDITIONAL))
    assert nets["generator"].input_shape == (42,)
    assert nets["discriminator"].input_shape == (11, 8, 8)
    # real modules give the shapes the compiler inferred
    torch.manual_seed(0)
    gen, disc = materialize(nets["generator"]), materialize(nets["discriminator"])
    gan = G.Gan(gen, disc, netspec.load(CONDITIONAL).latent, 10)
    y = torch.arange(5)
    fake = gan.generate(gan.noise(5), y)
    assert fake.shape == (5, 1, 8, 8) and gan.score(fake, y).shape == (5, 1)


def test_build_json_reports_both_networks(env):
    r = run_cli("build", DCGAN, "--json", env=env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["kind"] == "gan" and set(rep["networks"]) == {"generator", "discriminator"}
    g, d = rep["networks"]["generator"], rep["networks"]["discriminator"]
    for net in (g, d):
        assert {"parameters", "trainable_parameters", "output_shape", "layers"} <= set(net)
        assert net["parameters"] == sum(row["parameters"] for row in net["layers"]) > 0
    assert rep["parameters"] == g["parameters"] + d["parameters"]
    assert g["output_shape"] == [1, 8, 8] and d["output_shape"] == [1]
    assert rep == report(netspec.load(DCGAN))


# --- bad input: each a FILE:LINE error ---
BASE = """\
name: g
kind: gan
latent: {size: 8}
generator:
  layers:
    - linear: 64
    - reshape: [1, 8, 8]
    - tanh
discriminator:
  layers:
    - flatten
    - linear: 1
"""


def test_bad_specs_point_at_their_lines():
    # generator output vs the data: at the generator's last layer that sets the shape
    ps = problems_of(BASE.replace("linear: 64", "linear: 32").replace("[1, 8, 8]", "[1, 4, 8]"),
                     data_shape=(1, 8, 8))
    assert line_of(ps, "generator.layers.1.reshape") == 7
    assert "outputs [1, 4, 8] but the data's samples are [1, 8, 8]" in ps[0].message
    # discriminator must end in one logit
    ps = problems_of(BASE.replace("    - linear: 1\n", "    - linear: 10\n"))
    assert line_of(ps, "discriminator.layers.1.linear") == 12 and "one logit" in ps[0].message
    ps = problems_of(BASE + "    - sigmoid\n")
    assert line_of(ps, "discriminator.layers.2.sigmoid") == 13 and "logits" in ps[0].message
    # ... but least squares reads a raw score, so a sigmoid is allowed there
    compile_spec(netspec.load(BASE + "    - sigmoid\ngan: {loss: least_squares}\n"))
    # the discriminator's stated input against the generator's output
    ps = problems_of(BASE.replace("discriminator:\n", "discriminator:\n  input_shape: [1, 8, 4]\n"))
    assert line_of(ps, "discriminator.input_shape") == 10
    # a generator input_shape is netspec's to set
    ps = problems_of(BASE.replace("generator:\n", "generator:\n  input_shape: [8]\n"))
    assert line_of(ps, "generator.input_shape") == 5
    # conditional needs the class count, which must match the data
    ps = problems_of(BASE + "gan:\n  conditional: true\n")
    assert line_of(ps, "gan.conditional") == 14
    ps = problems_of(BASE + "gan:\n  conditional: true\n  classes: 7\n", data_shape=(1, 8, 8), num_classes=10)
    assert line_of(ps, "gan.classes") == 15 and "10 classes" in ps[0].message
    # spec-level: latent 0, a supervised loss, a misplaced loss, a single optimizer
    with pytest.raises(SpecError) as e:
        netspec.load(BASE.replace("size: 8", "size: 0") + "gan: {loss: cross_entropy}\nloss: bce\n"
                     "optimizer: {adam: {lr: 0.001}}\n")
    ps = e.value.problems
    assert line_of(ps, "latent.size") == 3
    assert line_of(ps, "gan.loss") == 13 and "supervised loss" in ps[1].message
    assert line_of(ps, "loss") == 14 and "gan: {loss" in ps[2].message
    assert line_of(ps, "optimizer") == 15 and "one optimizer per network" in ps[3].message


def test_bad_gan_spec_on_the_command_line(write_spec, env):
    path = write_spec(BASE.replace("linear: 64", "linear: 32").replace("[1, 8, 8]", "[1, 4, 8]") +
                      "data: {source: digits}\noptimizer:\n  generator: adam\n  discriminator: adam\n")
    r = run_cli("train", path, "--out", path.parent / "runs", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:7:" in r.stderr and "generator.layers.1.reshape" in r.stderr


# --- the alternating steps ---
def tiny_gan(label_smoothing=0.0):
    spec = netspec.load(DCGAN, [f"gan.label_smoothing={label_smoothing}"])
    nets = compile_spec(spec)
    torch.manual_seed(0)
    gan = G.Gan(materialize(nets["generator"]), materialize(nets["discriminator"]), spec.latent, None)
    opts = [torch.optim.Adam(net.parameters(), lr=0.01) for net in (gan.generator, gan.discriminator)]
    return spec, gan, opts


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}


def test_each_step_updates_only_its_network(tmp_path):
    from netspec.engine.loop import Engine
    spec, gan, (opt_g, opt_d) = tiny_gan()
    losses = G.Losses(spec.gan)
    engine = Engine(spec, tmp_path, torch.device("cpu"), 0, 1, False)
    engine.opts = {"generator": opt_g, "discriminator": opt_d}
    engine.params = {"generator": list(gan.generator.parameters()),
                     "discriminator": list(gan.discriminator.parameters())}
    real = torch.rand(16, 1, 8, 8) * 2 - 1
    g0, d0 = params(gan.generator), params(gan.discriminator)
    fake = gan.generate(gan.noise(16))
    G.d_step(gan, losses, real, fake, None, engine)
    assert changed(d0, gan.discriminator) == set(d0)  # every D weight moved
    assert not changed(g0, gan.generator)  # no G weight did
    g1, d1 = params(gan.generator), params(gan.discriminator)
    G.g_step(gan, losses, fake, None, engine)
    assert changed(g1, gan.generator) == set(g1)
    assert not changed(d1, gan.discriminator)
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # unfrozen again


def test_label_smoothing_changes_the_real_targets():
    plain, smooth = (G.Losses(netspec.load(DCGAN, [f"gan.label_smoothing={s}"]).gan) for s in (0, 0.1))
    assert plain.real == 1.0 and smooth.real == pytest.approx(0.9)
    # at D(x) = 0.9 the smoothed loss is at its minimum for real samples, the plain one still
    # pushes D(x) up; fakes are judged the same either way (smoothing is one-sided)
    real = torch.full((4, 1), torch.logit(torch.tensor(0.9)).item(), requires_grad=True)
    fake = torch.full((4, 1), -2.0)
    grads = []
    for losses in (plain, smooth):
        real.grad = None
        losses.d(real, fake).backward()
        grads.append(real.grad.clone())
    assert grads[0].lt(-1e-3).all() and grads[1].abs().max() < 1e-6
    assert torch.equal(plain.g(fake), smooth.g(fake))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert smooth.d(real, fake).item() == pytest.approx(
        (bce(real, torch.full_like(real, 0.9)) + bce(fake, torch.zeros_like(fake))).item())


def test_png_writer_roundtrip(tmp_path):
    images = torch.rand(6, 1, 8, 8)
    picture = G.grid(images, columns=3, min_width=0)
    assert picture.shape == (1, 2 * 9 + 1, 3 * 9 + 1)
    G.write_png(tmp_path / "g.png", picture)
    w, h, colour, _ = read_png(tmp_path / "g.png")  # a valid PNG: every chunk's CRC checked
    assert (w, h, colour) == (28, 19, 0)
    from PIL import Image
    got = torch.tensor(np.asarray(Image.open(tmp_path / "g.png")), dtype=torch.float32) / 255
    assert torch.allclose(got, picture[0], atol=1 / 255)
    rgb = G.grid(torch.rand(2, 3, 4, 4), 2, min_width=0)
    G.write_png(tmp_path / "c.png", rgb)
    assert read_png(tmp_path / "c.png")[2] == 2


# --- end to end ---
def test_train_writes_grid_metrics_and_samples(tmp_path, env):
    out = tmp_path / "runs"
    r = run_cli("train", CONDITIONAL, "--out", out, "--set", "train.epochs=2", "-q", env=env)
    assert r.returncode == 0, r.stderr
    run = out / "digits-dcgan-conditional"
    metrics = json.loads((run / "metrics.json").read_text())
    for k in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "quality/score",
              "quality/confidence", "quality/classes", "quality/label_accuracy", "quality/classifier_accuracy"):
        assert k in metrics, k
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * (1797 // 64)
    assert 0 < metrics["train/d_real"] < 1 and 0 < metrics["train/d_fake"] < 1
    assert metrics["quality/classifier_accuracy"] > 0.95  # the judge itself is sound
    assert 1 <= metrics["quality/classes"] <= 10 and 1 <= metrics["quality/score"] <= 10
    # samples and quality scores every train.diagnose_every (5) epochs and on the last one
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_002.png"]
    w, h, colour, _ = read_png(run / "samples" / "epoch_002.png")
    zoom = w // (10 * 9 + 1)  # ten columns of 8x8 tiles on a 1-pixel grid, one column per class
    assert colour == 0 and zoom >= 2 and (w, h) == (zoom * (10 * 9 + 1), zoom * (8 * 9 + 1))
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert {"generator", "discriminator"} <= set(ckpt) and set(ckpt["optimizer"]) == {"generator", "discriminator"}
    ev = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    ev.Reload()
    assert len(ev.Images("samples")) == 1 and len(ev.Images("real")) == 1
    for tag in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "quality/score"):
        assert tag in ev.Tags()["scalars"], tag
    assert ev.Scalars("quality/score")[-1].value == pytest.approx(metrics["quality/score"])
    # sampling: a chosen digit, as a PNG grid and as an array
    r = run_cli("sample", run, "--n", 64, "--out", tmp_path / "grid.png", "--label", 3, env=env)
    assert r.returncode == 0, r.stderr
    w, h = read_png(tmp_path / "grid.png")[:2]
    assert w == h and w % (8 * 9 + 1) == 0  # 8x8 tiles
    x = sample_run(run, n=5, out=tmp_path / "x.npy", label=3)
    x = np.load(x)
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1  # back in the data's range
    with pytest.raises(SpecError, match=r"outside 0\.\.9"):
        sample_run(run, label=12)


def test_resume_equals_a_straight_run(tmp_path, env):
    spec = netspec.load(DCGAN, ["train.epochs=4", "train.checkpoint_every=1"])
    straight = netspec.train(spec, out=tmp_path / "a", progress=False)
    netspec.train(netspec.load(DCGAN, ["train.epochs=2"]), out=tmp_path / "b", progress=False)
    resumed = netspec.train(spec, out=tmp_path / "b", resume=True, progress=False)
    a, b = (torch.load(r.folder / "checkpoints" / "last.pt", weights_only=True) for r in (straight, resumed))
    for net in ("generator", "discriminator"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
        assert str(a["optimizer"][net]) == str(b["optimizer"][net])
    for k in ("train/d_loss", "train/g_loss", "quality/score", "steps"):
        assert straight.metrics[k] == resumed.metrics[k], k


def test_a_discriminator_that_wins_gets_a_warning(tmp_path, env, capsys):
    spec = netspec.load(DCGAN, ["train.epochs=5", "gan.label_smoothing=0", "gan.loss=least_squares",
                                "optimizer.generator.adam.lr=1e-9", "optimizer.discriminator.adam.lr=0.01"])
    res = netspec.train(spec, out=tmp_path, progress=False)
    assert res.metrics["train/d_loss"] < 0.05
    assert any("discriminator has won" in w for w in res.metrics["warnings"])
    assert "warning: " in capsys.readouterr().err
    assert json.loads((res.folder / "metrics.json").read_text())["warnings"] == res.metrics["warnings"]
