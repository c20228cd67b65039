"""The compiler: shape inference for every layer type (checked against a real forward
pass), wiring, blocks, initializers, parameter counts, and shape errors at the layer's line."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import netspec
from netspec.compiler import BUILDERS
from netspec.kinds import compile_spec, report
from netspec.errors import SpecError
from netspec.spec.base import REGISTRY


def spec_text(layers: str, input_shape, extra: str = "") -> str:
    return (f"name: t\nseed: 0\nmodel:\n  input_shape: {list(input_shape)}\n{extra}"
            f"  layers:\n{layers}")


def load(layers, input_shape, extra=""):
    return netspec.load(spec_text(layers, input_shape, extra))


def forward(model: nn.Module, spec) -> torch.Tensor:
    shape = (3, *spec.model.input_shape)
    if spec.model.input_dtype == "long":
        x = torch.randint(0, 10, shape)
    else:
        x = torch.randn(shape)
    model.eval()
    with torch.no_grad():
        return model(x)


def errors(text: str) -> list:
    spec = netspec.load(text)
    with pytest.raises(SpecError) as e:
        netspec.build(spec)
    return e.value.problems


# --- shapes of every layer type ---------------------------------------------------------
# (input shape, layers (YAML block list), expected output shape, extra model lines)
CASES = {
    "linear": ([4], "- linear: 3", [3]),
    "linear_on_sequence": ([5, 4], "- linear: {out_features: 3, bias: false}", [5, 3]),
    "conv1d": ([2, 10], "- conv1d: {out_channels: 3, kernel_size: 3}", [3, 8]),
    "conv1d_same": ([2, 10], "- conv1d: {out_channels: 3, kernel_size: 3, padding: same}", [3, 10]),
    "conv1d_stride": ([2, 10], "- conv1d: {out_channels: 3, kernel_size: 3, stride: 2}", [3, 4]),
    "conv2d": ([1, 8, 8], "- conv2d: {out_channels: 4, kernel_size: 3, padding: 1}", [4, 8, 8]),
    "conv2d_rect": ([1, 8, 8], "- conv2d: {out_channels: 4, kernel_size: [3, 1], dilation: [2, 1]}", [4, 4, 8]),
    "conv2d_groups": ([4, 6, 6], "- conv2d: {out_channels: 8, kernel_size: 3, groups: 2, bias: false}", [8, 4, 4]),
    "conv_transpose2d": ([4, 4, 4], "- conv_transpose2d: {out_channels: 2, kernel_size: 2, stride: 2}", [2, 8, 8]),
    "conv_transpose2d_pad": ([4, 4, 4], "- conv_transpose2d: {out_channels: 2, kernel_size: 3, stride: 2, "
                                        "padding: 1, output_padding: 1}", [2, 8, 8]),
    "max_pool1d": ([2, 10], "- max_pool1d: 2", [2, 5]),
    "max_pool2d": ([1, 8, 8], "- max_pool2d: 2", [1, 4, 4]),
    "max_pool2d_stride_pad": ([1, 8, 8], "- max_pool2d: {kernel_size: 3, stride: 2, padding: 1}", [1, 4, 4]),
    "max_pool2d_ceil": ([1, 7, 7], "- max_pool2d: {kernel_size: 2, ceil_mode: true}", [1, 4, 4]),
    "avg_pool1d": ([2, 9], "- avg_pool1d: 3", [2, 3]),
    "avg_pool2d": ([3, 6, 4], "- avg_pool2d: [3, 2]", [3, 2, 2]),
    "adaptive_avg_pool2d": ([3, 7, 5], "- adaptive_avg_pool2d: 1", [3, 1, 1]),
    "adaptive_avg_pool2d_pair": ([3, 7, 5], "- adaptive_avg_pool2d: [2, 3]", [3, 2, 3]),
    "upsample_1d": ([2, 4], "- upsample: 2", [2, 8]),
    "upsample_size": ([1, 3, 3], "- upsample: {size: [5, 6]}", [1, 5, 6]),
    "upsample_bilinear": ([1, 3, 3], "- upsample: {scale_factor: 2, mode: bilinear}", [1, 6, 6]),
    "flatten": ([2, 3, 4], "- flatten", [24]),
    "reshape": ([24], "- reshape: [2, 3, 4]", [2, 3, 4]),
    "reshape_infer": ([24], "- reshape: [-1, 4]", [6, 4]),
    "dropout": ([5], "- dropout: 0.3", [5]),
    "dropout2d": ([2, 4, 4], "- dropout2d: 0.3", [2, 4, 4]),
    "batch_norm_features": ([5], "- batch_norm", [5]),
    "batch_norm_1d": ([3, 7], "- batch_norm: {momentum: 0.01}", [3, 7]),
    "batch_norm_2d": ([3, 4, 4], "- batch_norm: {eps: 0.001}", [3, 4, 4]),
    "layer_norm": ([5, 6], "- layer_norm", [5, 6]),
    "embedding": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10}", [7, 4],
                  "  input_dtype: long\n"),
    "embedding_padding": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10, padding_idx: 0}", [7, 4],
                          "  input_dtype: long\n"),
    "rnn_sequence": ([6, 3], "- rnn: 5", [6, 5]),
    "rnn_relu_last": ([6, 3], "- rnn: {hidden_size: 5, nonlinearity: relu, output: last}", [5]),
    "lstm_sequence": ([6, 3], "- lstm: {hidden_size: 5, num_layers: 2, dropout: 0.1}", [6, 5]),
    "lstm_last": ([6, 3], "- lstm: {hidden_size: 5, output: last}", [5]),
    "lstm_state": ([6, 3], "- lstm: {hidden_size: 5, output: state}", [5]),
    "lstm_bidirectional": ([6, 3], "- lstm: {hidden_size: 5, bidirectional: true}", [6, 10]),
    "lstm_bidirectional_last": ([6, 3], "- lstm: {hidden_size: 5, bidirectional: true, output: last}", [10]),
    "gru_sequence": ([6, 3], "- gru: 5", [6, 5]),
    "gru_last": ([6, 3], "- gru: {hidden_size: 5, output: last}", [5]),
    "gru_state": ([6, 3], "- gru: {hidden_size: 5, num_layers: 2, output: state}", [5]),
    "embedding_lstm_linear": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10}\n"
                                   "- lstm: {hidden_size: 6, output: last}\n- linear: 10", [10],
                              "  input_dtype: long\n"),
    "add": ([4], "- linear: 3\n  name: a\n- linear: 3\n  inputs: input\n  name: b\n- add:\n  inputs: [a, b]", [3]),
    "add_skip": ([4], "- linear: 4\n- relu\n- add:\n  inputs: [input, relu_1]", [4]),
    "concat": ([4], "- linear: 3\n  name: a\n- linear: 5\n  inputs: input\n  name: b\n"
                    "- concat:\n  inputs: [a, b]", [8]),
    "concat_channels": ([2, 4, 4], "- conv2d: {out_channels: 3, kernel_size: 1}\n  name: c\n"
                                   "- concat: 1\n  inputs: [input, c]", [5, 4, 4]),
    "concat_dim_neg": ([2, 4, 4], "- concat: -2\n  inputs: [input, input]", [2, 8, 4]),
    "identity": ([3, 4], "- identity", [3, 4]),
    "multi_head_attention": ([6, 8], "- multi_head_attention: {num_heads: 2, causal: true}", [6, 8]),
    "multi_head_attention_cross": ([6, 8], "- linear: 4\n  name: m\n- multi_head_attention: 2\n"
                                           "  inputs: [input, m]", [6, 8]),
    "transformer_encoder_layer": ([6, 8], "- transformer_encoder_layer: {nhead: 2, dim_feedforward: 16}", [6, 8]),
    "transformer_decoder_layer": ([6, 8], "- linear: 8\n  name: m\n- transformer_decoder_layer: "
                                          "{nhead: 2, dim_feedforward: 16, norm_first: true}\n  inputs: [input, m]",
                                  [6, 8]),
    "position_embedding": ([6, 8], "- position_embedding: {max_length: 10}", [6, 8]),
    "position_embedding_sinusoidal": ([6, 8], "- position_embedding: sinusoidal", [6, 8]),
    "permute": ([2, 3, 4], "- permute: [2, 0, 1]", [4, 2, 3]),
    "transpose": ([2, 3, 4], "- transpose: [0, 2]", [4, 3, 2]),
    "global_avg_pool_space": ([3, 4, 5], "- global_avg_pool", [3]),
    "global_max_pool_space": ([3, 4], "- global_max_pool", [3]),
    "global_avg_pool_time": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10}\n- global_avg_pool",
                             [4], "  input_dtype: long\n"),
    "global_max_pool_time": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10}\n- global_max_pool",
                             [4], "  input_dtype: long\n"),
    "conv1d_over_time": ([7], "- embedding: {embedding_dim: 4, num_embeddings: 10}\n"
                              "- conv1d: {out_channels: 6, kernel_size: 3}\n- max_pool1d: 2\n- batch_norm",
                         [2, 6], "  input_dtype: long\n"),
}
ACTIVATIONS = ["relu", "leaky_relu: 0.2", "elu", "gelu", "selu", "silu", "sigmoid", "tanh", "softmax",
               "log_softmax", "{softmax: {dim: 1}}"]
for a in ACTIVATIONS:
    CASES[f"act_{a}"] = ([3, 4], f"- {a}", [3, 4])


def _indent(layers: str) -> str:
    return "".join(f"    {line}\n" for line in layers.splitlines())


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_shapes_match_a_real_forward_pass(case):
    in_shape, layers, expected, *extra = CASES[case]
    spec = load(_indent(layers), in_shape, extra[0] if extra else "")
    rep = report(spec)
    assert rep["output_shape"] == expected
    assert rep["layers"][-1]["output_shape"] == expected
    model = netspec.build(spec)
    out = forward(model, spec)
    assert list(out.shape) == [3, *expected]
    # every row's shape is what that layer really outputs
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())
    assert rep["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_every_layer_tag_has_a_builder():
    missing = sorted(set(REGISTRY["layer"]) - {"block"} - set(BUILDERS))
    assert missing == []
    # and the shape cases above cover every layer type but the block
    covered = {line.split(":")[0].strip("-{ ").split()[0] for c in CASES.values() for line in c[1].splitlines()
               if line.startswith("-")}
    assert set(REGISTRY["layer"]) - {"block"} - covered == set()


def test_batch_norm_picks_1d_or_2d_by_input_rank():
    for shape, cls in (([5], nn.BatchNorm1d), ([3, 7], nn.BatchNorm1d), ([3, 4, 4], nn.BatchNorm2d)):
        model = netspec.build(load("    - batch_norm\n", shape))
        assert type(model.batch_norm_1) is cls and model.batch_norm_1.num_features == shape[0]


def test_every_row_shape_matches_the_real_intermediate_outputs():
    spec = netspec.load("specs/digits_cnn.yaml")
    model = netspec.build(spec)
    rows = {r["name"]: r["output_shape"] for r in report(spec)["layers"]}
    seen = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, list(o.shape[1:])))
    forward(model, spec)
    assert seen == rows


# --- the module: names, counts, seeds -------------------------------------------------
NAMED = """\
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
      name: stem
    - relu
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1, activation: relu}
    - add:
      inputs: [stem, conv2d_2]
      name: skip
    - flatten
    - linear: {out_features: 10, activation: log_softmax}
      name: head
"""


def test_submodule_names_follow_the_spec():
    spec = load(NAMED, [1, 6, 6])
    model = netspec.build(spec)
    assert type(model) is not nn.Sequential and isinstance(model, nn.Module)
    assert [n for n, _ in model.named_children()] == [
        "stem", "relu_1", "conv2d_2", "conv2d_2_relu", "skip", "flatten_1", "head", "head_log_softmax"]
    assert [r["name"] for r in report(spec)["layers"]] == [n for n, _ in model.named_children()]
    assert set(model.state_dict()) == {"stem.weight", "stem.bias", "conv2d_2.weight", "conv2d_2.bias",
                                       "head.weight", "head.bias"}
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 4 * 6 * 6
    out = forward(model, spec)
    assert torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-5)  # log_softmax ran


def test_activation_inside_a_layer_is_its_own_row():
    rep = report(load("    - linear: {out_features: 8, activation: {leaky_relu: 0.1}}\n", [4]))
    assert [(r["name"], r["type"], r["output_shape"], r["parameters"]) for r in rep["layers"]] == [
        ("linear_1", "linear", [8], 40), ("linear_1_leaky_relu", "leaky_relu", [8], 0)]


def test_a_user_name_does_not_collide_with_a_generated_activation_name():
    spec = load("    - linear: {out_features: 4, activation: relu}\n    - linear: 4\n      name: linear_1_relu\n",
                [4])
    model = netspec.build(spec)
    names = [n for n, _ in model.named_children()]
    assert len(names) == len(set(names)) == 3
    assert list(forward(model, spec).shape) == [3, 4]


def test_parameter_counts_match_torch():
    for path in ("specs/digits_cnn.yaml", "specs/digits_mlp.yaml"):
        spec = netspec.load(path)
        model = netspec.build(spec)
        rep = report(spec)
        assert rep["parameters"] == sum(p.numel() for p in model.parameters())
        assert rep["parameters"] == sum(r["parameters"] for r in rep["layers"])
    rep = report(netspec.load("specs/digits_mlp.yaml"))
    assert rep["parameters"] == (64 * 128 + 128) + (128 * 32 + 32) + (32 * 10 + 10)


def test_batch_norm_without_affine_has_no_parameters_and_non_trainable_counts():
    rep = report(load("    - batch_norm: {affine: false}\n    - linear: 2\n", [5]))
    assert rep["layers"][0]["parameters"] == 0 and rep["parameters"] == 12


def test_compiling_allocates_nothing():
    nets = compile_spec(netspec.load("specs/digits_cnn.yaml"))
    assert all(p.is_meta for p in nets["model"].module.parameters())


def test_build_is_seeded():
    a = netspec.build(netspec.load("specs/digits_mlp.yaml"))
    b = netspec.build(netspec.load("specs/digits_mlp.yaml"))
    c = netspec.build(netspec.load("specs/digits_mlp.yaml", ["seed=1"]))
    for (name, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(p, q), name
    assert not all(torch.equal(p, r) for p, r in zip(a.state_dict().values(), c.state_dict().values()))


def test_the_module_is_plain_torch():
    spec = netspec.load("specs/digits_cnn.yaml")
    model = netspec.build(spec)
    copy = netspec.build(spec)
    for p in copy.parameters():
        nn.init.zeros_(p)
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    copy.eval()
    assert torch.equal(model(x), copy(x))
    loss = model(x).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# --- blocks ---------------------------------------------------------------------------
BLOCKS = """\
  blocks:
    res:
      - linear: 8
        name: h
      - relu
      - add:
        inputs: [h, input]
    down: [{linear: 4}, tanh]
"""


def test_blocks_with_repeat():
    layers = "    - linear: 8\n    - block: {use: res, repeat: 3}\n    - block: down\n    - linear: 2\n"
    spec = load(layers, [5], BLOCKS)
    model = netspec.build(spec)
    rep = report(spec)
    names = [r["name"] for r in rep["layers"]]
    assert names[:4] == ["linear_1", "res_1.0.h", "res_1.0.relu_1", "res_1.0.add_1"]
    assert "res_1.2.add_1" in names and "down_1.linear_1" in names and names[-1] == "linear_2"
    assert isinstance(model.res_1, nn.Sequential) and len(model.res_1) == 3
    assert model.res_1[0].h is not model.res_1[1].h  # each repeat has its own weights
    assert rep["parameters"] == sum(p.numel() for p in model.parameters()) == 5 * 8 + 8 + 3 * 72 + 36 + 10
    assert list(forward(model, spec).shape) == [3, 2]
    assert rep["output_shape"] == [2]


def test_block_errors():
    ps = errors(spec_text("    - block: nope\n", [4], BLOCKS))
    assert ps[0].message == "unknown block 'nope'; valid: down, res"
    ps = errors(spec_text("    - block: rse\n", [4], BLOCKS))
    assert ps[0].message == "unknown block 'rse'; did you mean 'res'?"
    ps = errors(spec_text("    - block: a\n", [4], "  blocks:\n    a: [{block: a}]\n"))
    assert any("uses itself" in p.message for p in ps)
    # a block that does not fit: the problem is reported inside the block, and at the use
    ps = errors(spec_text("    - linear: 3\n    - block: res\n", [4], BLOCKS))
    assert [p.path for p in ps] == ["model.blocks.res.2.add", "model.layers.1.block"]
    assert "equal shapes" in ps[0].message


# --- initializers ---------------------------------------------------------------------
def _init_model(init: str, layer="linear: {out_features: 200, init: INIT}", shape=(100,)):
    spec = load(f"    - {layer.replace('INIT', init)}\n", list(shape))
    return netspec.build(spec)


def test_zeros_init_gives_zero_weights():
    model = _init_model("zeros")
    assert torch.count_nonzero(model.linear_1.weight) == 0 and torch.count_nonzero(model.linear_1.bias) == 0


def test_truncated_normal_is_bounded_by_two_std():
    w = _init_model("{truncated_normal: 0.01}").linear_1.weight
    assert w.abs().max() <= 0.02 + 1e-7
    assert 0.006 < w.std() < 0.01  # a normal cut at 2 std has std 0.88 sigma
    w = _init_model("{truncated_normal: {mean: 1.0, std: 0.1}}").linear_1.weight
    assert ((w >= 0.8) & (w <= 1.2)).all()


def test_other_initializers():
    w = _init_model("{uniform: {a: -0.5, b: 0.25}}").linear_1.weight
    assert w.min() >= -0.5 and w.max() <= 0.25 and w.min() < -0.4
    w = _init_model("{normal: {mean: 3, std: 0.5}}").linear_1.weight
    assert abs(w.mean() - 3) < 0.05 and abs(w.std() - 0.5) < 0.05
    w = _init_model("orthogonal").linear_1.weight  # 200 x 100: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(100), atol=1e-4)
    for name in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                 "{kaiming_normal: {nonlinearity: leaky_relu, a: 0.2, mode: fan_out}}", "{xavier_uniform: 2.0}"):
        model = _init_model(name)
        assert torch.count_nonzero(model.linear_1.bias) == 0
        assert 0 < model.linear_1.weight.std() < 1


def test_init_on_conv_and_recurrent_layers():
    model = _init_model("zeros", "conv2d: {out_channels: 4, kernel_size: 3, init: INIT}", (2, 5, 5))
    assert torch.count_nonzero(model.conv2d_1.weight) == 0
    model = _init_model("{truncated_normal: 0.05}", "lstm: {hidden_size: 8, num_layers: 2, init: INIT}", (4, 3))
    for name, p in model.lstm_1.named_parameters():
        if "bias" in name:
            assert torch.count_nonzero(p) == 0, name
        else:
            assert p.abs().max() <= 0.1 + 1e-7, name


def test_init_applies_only_to_its_layer():
    spec = load("    - linear: {out_features: 8, init: zeros}\n    - linear: 8\n", [8])
    model = netspec.build(spec)
    assert torch.count_nonzero(model.linear_1.weight) == 0
    assert torch.count_nonzero(model.linear_2.weight) > 0


# --- shape errors, at the layer's line, before any weight exists ------------------------
def test_conv_after_flatten(write_spec):
    path = write_spec(spec_text("    - flatten\n    - conv2d: {out_channels: 3, kernel_size: 3}\n", [1, 8, 8]))
    ps = errors(str(path))
    assert [(p.line, p.col, p.path) for p in ps] == [(7, 15, "model.layers.1.conv2d")]
    assert ps[0].message == ("conv2d expects input [channels, height, width], but gets [64]; it follows a "
                             "flatten or linear layer: move it before the flatten, or add a reshape")
    assert str(ps[0]).startswith(f"{path}:7:15: model.layers.1.conv2d: conv2d expects")


@pytest.mark.parametrize("layer,shape,message", [
    ("conv2d: {out_channels: 3, kernel_size: 7}", [1, 4, 4],
     "kernel_size 7 is larger than its input [4, 4]; use a smaller kernel or add padding"),
    ("conv1d: {out_channels: 3, kernel_size: 3, dilation: 4}", [1, 6],
     "kernel_size 3 is larger than its input [6]; use a smaller kernel or add padding"),
    ("max_pool2d: 5", [1, 4, 4], "kernel_size 5 is larger than its input [4, 4]"),
    ("avg_pool1d: 5", [1, 4], "kernel_size 5 is larger than its input [4]"),
    ("max_pool2d: {kernel_size: 2, padding: 2}", [1, 4, 4], "padding 2 must be at most half of kernel_size 2"),
    ("conv2d: {out_channels: 3, kernel_size: 3}", [1, 8], "conv2d expects input [channels, height, width], but gets [1, 8]"),
    ("conv1d: {out_channels: 3, kernel_size: 3}", [2, 3, 8, 8], "add a flatten or reshape before it"),
    ("conv2d: {out_channels: 3, kernel_size: [3, 3, 3]}", [1, 8, 8], "need 1 or 2 values for a 2-d input"),
    ("conv2d: {out_channels: 3, kernel_size: 3, groups: 2}", [3, 8, 8], "groups=2 must divide the input channels (3)"),
    ("conv2d: {out_channels: 3, kernel_size: 3, padding: same, stride: 2}", [1, 8, 8], "padding 'same' needs stride 1"),
    ("conv_transpose2d: {out_channels: 2, kernel_size: 2, output_padding: 2}", [1, 4, 4],
     "output_padding 2 must be smaller than stride 1 or dilation 1"),
    ("conv_transpose2d: {out_channels: 2, kernel_size: 2, padding: 5}", [1, 2, 3], "does not fit its input [1, 2, 3]"),
    ("lstm: 4", [8], "lstm expects input [time, features], but gets [8]"),
    ("batch_norm", [1, 2, 3, 4], "batch_norm expects input [features] or [channels, length] or"),
    ("dropout2d", [8], "dropout2d expects input [channels, height, width]"),
    ("upsample: {size: [3, 3, 3]}", [1, 2, 3], "does not fit its input [1, 2, 3]"),
    ("adaptive_avg_pool2d: 1", [4], "adaptive_avg_pool2d expects input [channels, height, width]"),
    ("reshape: [5, 5]", [24], "cannot reshape [24] (24 values) to [5, 5] (25 values); the sizes must multiply to 24"),
    ("reshape: [-1, 5]", [24], "cannot reshape [24] (24 values) to [-1, 5]"),
    ("reshape: [-1, -1]", [24], "reshape takes at most one -1"),
    ("reshape: [0, -1]", [24], "reshape sizes must be positive"),
    ("softmax: 3", [4], "dim 3 is outside an input of rank 2"),
    ("linear: {out_features: 4, activation: {softmax: 5}}", [4], "dim 5 is outside an input of rank 2"),
    ("embedding: {embedding_dim: 4, num_embeddings: 10}", [7], "embedding reads token ids: set model.input_dtype: long"),
    ("embedding: 4", [7], "num_embeddings is not set"),
    ("add", [4], "add needs two or more inputs: write 'inputs: [a, b]'"),
    ("concat", [4], "concat needs two or more inputs"),
])
def test_shape_mismatches(layer, shape, message):
    extra = "  input_dtype: long\n" if "num_embeddings is not set" in message else ""
    ps = errors(spec_text(f"    - {layer}\n", shape, extra))
    assert len(ps) == 1, [str(p) for p in ps]
    assert message in ps[0].message, ps[0].message
    assert ps[0].path.startswith("model.layers.0") and ps[0].line == 6 + extra.count("\n")


def test_token_ids_into_a_float_layer():
    ps = errors(spec_text("    - linear: 4\n", [7], "  input_dtype: long\n"))
    assert ps[0].message == "linear gets token ids (input_dtype: long); put an embedding layer first"


def test_add_of_unequal_shapes(write_spec):
    path = write_spec(spec_text("    - linear: 3\n      name: a\n    - linear: 4\n      name: b\n"
                                "    - add:\n      inputs: [a, b]\n", [4]))
    ps = errors(str(path))
    assert [(p.line, p.path, p.message) for p in ps] == [
        (10, "model.layers.2.add", "add needs inputs of equal shapes, got [3], [4]")]


@pytest.mark.parametrize("layer,message", [
    ("{concat: {dim: 0}, inputs: [a, b]}", "dim 0 cannot join inputs of rank 2 (batch is dim 0)"),
    ("{concat: {dim: 2}, inputs: [a, b]}", "dim 2 cannot join inputs of rank 2 (batch is dim 0)"),
    ("{concat: 1, inputs: [a, c]}", "concat needs inputs of equal rank, got [3], [3, 2]"),
    ("{concat: -1, inputs: [c, d]}", "concat along dim -1 needs the other sizes equal, got [3, 2], [2, 3]"),
    ("{linear: 2, inputs: [a, b]}", "linear takes one input; merge several with add or concat first"),
    ("{block: down, inputs: [a, b]}", "block 'down' takes one input, but this use gives 2 "
                                      "(a block that declares `inputs: [x, y]` takes several)"),
])
def test_merge_errors(layer, message):
    layers = ("    - {linear: 3, name: a}\n    - {linear: 4, name: b, inputs: input}\n"
              "    - {reshape: [3, 2], name: c, inputs: input}\n    - {reshape: [2, 3], name: d, inputs: input}\n"
              f"    - {layer}\n")
    ps = errors(spec_text(layers, [6], "  blocks:\n    down: [relu]\n"))
    assert [p.message for p in ps] == [message] and ps[0].path.startswith("model.layers.4")


def test_unknown_inputs_name(write_spec):
    path = write_spec(spec_text("    - linear: 3\n      name: hidden\n    - linear: 3\n      inputs: hiden\n", [4]))
    ps = errors(str(path))
    assert [(p.line, p.col, p.path) for p in ps] == [(9, 15, "model.layers.1.inputs")]
    assert ps[0].message.startswith("unknown input 'hiden'; did you mean 'hidden'?")
    # a later layer cannot be read before it exists, and a layer cannot read itself
    ps = errors(spec_text("    - {linear: 3, inputs: later}\n    - {linear: 3, name: later}\n", [4]))
    assert "unknown input 'later'" in ps[0].message
    ps = errors(spec_text("    - {linear: 3, name: me, inputs: me}\n", [4]))
    assert "unknown input 'me'" in ps[0].message


def test_duplicate_layer_names(write_spec):
    path = write_spec(spec_text("    - {linear: 3, name: h}\n    - {linear: 3, name: h}\n    - {relu: null, name: input}\n",
                                [4]))
    ps = errors(str(path))
    assert [(p.line, p.path) for p in ps] == [(7, "model.layers.1.name"), (8, "model.layers.2.name")]
    assert ps[0].message == "layer name 'h' is used twice; names must be unique"


def test_every_independent_problem_is_reported():
    layers = ("    - conv2d: {out_channels: 3, kernel_size: 9}\n"           # kernel too large
              "    - {linear: 3, inputs: input, name: b}\n"                 # fine: [1, 4, 3]
              "    - {add: null, inputs: [b, nope]}\n"                      # unknown input
              "    - {max_pool2d: 3, inputs: input}\n"                      # fine
              "    - {lstm: 3, inputs: input}\n")                           # rank
    ps = errors(spec_text(layers, [1, 4, 4]))
    assert [p.path for p in ps] == ["model.layers.0.conv2d", "model.layers.2.inputs", "model.layers.4.lstm"]


def test_output_too_large_per_sample():
    ps = errors(spec_text("    - reshape: [100000, 1]\n    - upsample: {size: [100000]}\n    - flatten\n"
                          "    - linear: 2\n", [100000]))
    assert len(ps) == 1 and "values per sample; that cannot fit in memory" in ps[0].message
    assert ps[0].path == "model.layers.1.upsample"


def test_giant_sizes_are_refused_quickly_without_allocating():
    start = time.perf_counter()
    ps = errors(spec_text("    - linear: 100000\n    - linear: 1000000\n", [1000000]))  # 2 * 10^11 weights
    assert time.perf_counter() - start < 10
    assert len(ps) == 1 and ps[0].path == "model"
    assert "200,001,100,000 parameters need 745.1 GiB for the weights alone" in ps[0].message
    assert "(the largest, linear_2, has 100,001,000,000)" in ps[0].message


def test_sizes_beyond_int64_are_a_spec_error():
    ps = errors(spec_text("    - linear: 100000000000000000000000000000\n", [4]))
    assert ps[0].message == "its sizes are too large to be represented at all; use smaller sizes"


def test_report_keys_per_contract():
    rep = report(netspec.load("specs/digits_cnn.yaml"))
    assert rep["kind"] == "network"
    assert isinstance(rep["parameters"], int) and isinstance(rep["trainable_parameters"], int)
    assert rep["output_shape"] == [10] and rep["input_shape"] == [1, 8, 8]
    for row in rep["layers"]:
        assert {"name", "type", "output_shape", "parameters"} <= set(row)
