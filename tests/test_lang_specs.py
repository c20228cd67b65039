"""The attention, block and scale specs in specs/ train end to end through the CLI (few
epochs, small data), write their metrics, and can be used afterwards."""
from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT, run_cli

SPECS = ROOT / "specs"


def train(tmp_path, spec, *sets):
    r = run_cli("train", SPECS / spec, "--out", tmp_path, "-q", *sum((["--set", s] for s in sets), []))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "warning" not in r.stderr.lower(), r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_transformer_classifier_trains_and_predicts(tmp_path):
    train(tmp_path, "reviews_transformer.yaml", "train.epochs=3", "train.threads=1")
    run = tmp_path / "reviews-transformer"
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/accuracy"] > 0.6  # two classes; it reaches 0.7-0.9 by epoch 3
    lines = tmp_path / "lines.txt"
    lines.write_text("the lamp is not bad\nwell the backpack looks solid but it stopped working\n")
    r = run_cli("predict", run, lines)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["class"] in ("positive", "negative") for x in r.stdout.splitlines()] == [True, True]


@pytest.mark.slow
def test_gpt_char_model_trains_and_samples(tmp_path):
    train(tmp_path, "char_gpt.yaml", "train.epochs=1", "data.validation_split=0.5",
          "model.input_shape=[32]")
    run = tmp_path / "char-gpt"
    m = json.loads((run / "metrics.json").read_text())
    assert m["val/perplexity"] == pytest.approx(math.exp(m["val/loss"]))
    assert m["val/perplexity"] < 5  # one epoch reaches ~3.1; a uniform guess over the 58 characters, 58
    r = run_cli("sample", run, "--prime", "Olga", "--length", "50", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Olga") and len(r.stdout.rstrip("\n")) == 4 + 50
    # greedy, past the 32-character window (the cached path starts again from its second half):
    # the seed changes nothing, and one epoch has learned the text's commonest words
    greedy = [run_cli("sample", run, "--prime", "Olga", "--length", "80", "--temperature", "0", "--seed", s)
              for s in (1, 2)]
    assert greedy[0].returncode == 0, greedy[0].stderr
    assert greedy[0].stdout == greedy[1].stdout and len(greedy[0].stdout.rstrip("\n")) == 4 + 80
    assert any(w in greedy[0].stdout for w in (" the ", " and ", " said ")), greedy[0].stdout


@pytest.mark.slow
def test_resnet_family_trains_at_a_chosen_scale_and_sweeps_scales(tmp_path):
    r = run_cli("train", SPECS / "digits_resnet.yaml", "--scale", "n", "--out", tmp_path, "-q",
                "--set", "train.epochs=2")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "digits-resnet" / "metrics.json").read_text())
    assert m["test/accuracy"] > 0.3  # ten classes; two epochs of the smallest size
    spec = (tmp_path / "digits-resnet" / "spec.yaml").read_text()
    assert "scale: n" in spec and "$out" in spec  # the resolved spec keeps the scale and the block params
    r = run_cli("train", SPECS / "digits_resnet.yaml", "--dry-run", "--out", tmp_path / "sweep",
                "--set", "sweep={grid: {model.scale: [n, s, m]}}")
    assert r.returncode == 0, r.stderr
    assert all(f"scale={s}" in r.stdout for s in "nsm"), r.stdout


@pytest.mark.slow
def test_unet_segments_with_a_per_pixel_loss(tmp_path):
    train(tmp_path, "discs_unet.yaml", "train.epochs=2", "train.batch_size=64")
    m = json.loads((tmp_path / "discs-unet" / "metrics.json").read_text())
    assert 0.0 <= m["test/iou"] <= 1.0 and m["val/iou"] > 0.05  # discs are ~10% of the pixels
    assert m["monitor"] == "val/iou"


@pytest.mark.slow
def test_gan_networks_may_use_attention(tmp_path):
    """SAGAN-style: the feature map as a sequence of positions [H*W, C], self-attention, back."""
    text = (SPECS / "digits_dcgan.yaml").read_text().replace(
        "    - conv_transpose2d: {out_channels: 1,",
        "    - reshape: [32, 16]\n    - permute: [1, 0]\n    - multi_head_attention: 4\n"
        "    - permute: [1, 0]\n    - reshape: [32, 4, 4]\n    - conv_transpose2d: {out_channels: 1,").replace(
        "    - flatten\n    - linear: 1",
        "    - reshape: [64, 4]\n    - permute: [1, 0]\n    - transformer_encoder_layer: {nhead: 4, dim_feedforward: 64}\n"
        "    - global_avg_pool\n    - linear: 1")
    spec = tmp_path / "gan.yaml"
    spec.write_text(text)
    r = run_cli("build", spec, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert "multi_head_attention" in [x["type"] for x in rep["networks"]["generator"]["layers"]]
    r = run_cli("train", spec, "--out", tmp_path, "-q", "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "digits-dcgan" / "metrics.json").read_text())
    assert math.isfinite(m["train/g_loss"]) and math.isfinite(m["train/d_loss"])


S2S = """
name: s2s
kind: seq2seq
encoder: {max_length: 8, layers: [{embedding: 16}, {lstm: 32}]}
decoder: {max_length: 8, layers: [{embedding: 16}, {lstm: 32}]}
vocab: {source_size: 30, target_size: 31}
"""


def test_seq2seq_vocabulary_sizes_stated_in_the_spec_build_without_data():
    import netspec
    from netspec.errors import SpecError
    from netspec.kinds import report
    rep = report(netspec.load(S2S))
    assert rep["networks"]["encoder"]["layers"][0]["parameters"] == 30 * 16
    assert rep["networks"]["decoder"]["output_shape"] == [9, 31]
    small = S2S.replace("source_size: 30", "source_size: 5") + (
        "data: {source: {sort_letters: {samples: 200, min_length: 3, max_length: 8}}}\n")
    with pytest.raises(SpecError, match=r"vocab.source_size: source_size 5 is smaller than the data's source "
                                        r"vocabulary of 30 tokens"):
        report(netspec.load(small))
