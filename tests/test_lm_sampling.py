"""Language-model sampling: a causal network runs on new tokens only (keys and values
cached) and samples exactly what re-running the window samples; past the window it starts
again from the window's second half; any other network re-runs the window."""
from __future__ import annotations

import textwrap

import pytest
import torch

import netspec
from netspec.compiler.incremental import Incremental, why_not
from netspec.kinds.network import generate

WINDOW, VOCAB = 12, 11


def build(layers: str, blocks: str = "", window=WINDOW, seed=0):
    text = (f"name: t\nseed: {seed}\nmodel:\n  input_shape: [{window}]\n  input_dtype: long\n"
            + textwrap.indent(textwrap.dedent(blocks), "  ") + "  layers:\n"
            + textwrap.indent(textwrap.dedent(layers).strip("\n"), "    ") + "\n")
    return netspec.build(netspec.load(text)).eval()


# A small GPT with every kind of layer the cached path knows: a block repeated, a residual
# wired with `inputs`, a standalone causal attention, activations, concat over features.
BLOCKS = """
blocks:
  gpt: [{transformer_encoder_layer: {nhead: 2, dim_feedforward: 32, dropout: 0.1, activation: gelu,
                                     norm_first: true, causal: true}}]
"""
GPT = f"""
- embedding: {{embedding_dim: 16, num_embeddings: {VOCAB}}}
- position_embedding
- dropout: 0.1
- {{name: blocks, block: {{use: gpt, repeat: 2}}}}
- {{name: attn, multi_head_attention: {{num_heads: 4, causal: true}}}}
- {{name: res, add: null, inputs: [attn, blocks]}}
- {{name: wide, linear: {{out_features: 8, activation: tanh}}}}
- {{name: both, concat: -1, inputs: [wide, res]}}
- layer_norm
- linear: {VOCAB}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Networks this small step many times faster on one thread when the machine is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gpt(one_thread):
    model = build(GPT, BLOCKS)
    assert why_not(model) is None
    with torch.no_grad():  # positions as strong as tokens (GPT-2's init makes them faint), so a wrong offset shows
        model.position_embedding_1.weight.normal_(0, 1)
    return model


def sampled(model, start, length, temperature, cached, seed=3, n=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return generate(model, start, n, length, temperature, WINDOW, g, cached=cached)


def test_stepping_gives_the_outputs_of_a_full_pass(gpt):
    x = torch.randint(0, VOCAB, (2, WINDOW), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = gpt(x)
        steps = Incremental(gpt)
        parts = [steps.step(x[:, :5])] + [steps.step(x[:, t:t + 1]) for t in range(5, WINDOW)]
    torch.testing.assert_close(torch.cat(parts, 1), full)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
def test_cached_sampling_draws_the_tokens_of_rerunning_the_window(gpt, temperature):
    start = [1, 5, 2]
    length = WINDOW - len(start) + 1  # up to the last token read from a full window
    cached = sampled(gpt, start, length, temperature, cached=True)
    rerun = sampled(gpt, start, length, temperature, cached=False)
    assert cached == rerun
    assert len({tuple(t) for t in cached}) > 1 or temperature == 0  # rows draw their own tokens


def reference(model, start, length, n):
    """Greedy tokens with the cached path's context rule written as full passes: the context
    is the tokens since the last restart, and a restart keeps the last WINDOW // 2 tokens
    when the next token would have no position left."""
    x = torch.tensor([start] * n)
    r = max(0, x.shape[1] - WINDOW)
    for _ in range(length):
        with torch.no_grad():
            token = model(x[:, r:])[:, -1].argmax(-1, keepdim=True)
        x = torch.cat([x, token], 1)
        if x.shape[1] - r > WINDOW:
            r = x.shape[1] - WINDOW // 2
    return x[:, len(start):].tolist()


@pytest.mark.parametrize("start", [[4], list(range(VOCAB)) * 2])  # a short prime, and one past the window
def test_text_longer_than_the_window_restarts_from_its_second_half(gpt, start):
    length = 3 * WINDOW + 5  # several restarts
    tokens = sampled(gpt, start, length, 0.0, cached=True, n=2)
    assert [len(t) for t in tokens] == [length, length]
    assert tokens == reference(gpt, start, length, 2)
    # with a temperature, still one token per step, from the vocabulary
    drawn = sampled(gpt, start, length, 0.9, cached=True, n=2)
    assert all(len(t) == length and all(0 <= i < VOCAB for i in t) for t in drawn)


@pytest.mark.parametrize("layers,reason", [
    (f"- embedding: {{embedding_dim: 8, num_embeddings: {VOCAB}}}\n- lstm: {{hidden_size: 8}}\n- linear: {VOCAB}",
     "'lstm_1' (Recurrent) reads more than one step at a time"),
    (f"- embedding: {{embedding_dim: 8, num_embeddings: {VOCAB}}}\n- position_embedding\n"
     f"- transformer_encoder_layer: {{nhead: 2, dim_feedforward: 16}}\n- linear: {VOCAB}",
     "'transformer_encoder_layer_1' is not causal (each step attends to the whole window); set causal: true"),
    (f"- embedding: {{embedding_dim: 8, num_embeddings: {VOCAB}}}\n- conv1d: {{out_channels: 8, kernel_size: 3, padding: 1}}"
     f"\n- linear: {VOCAB}",
     "'conv1d_1' (OverTime) reads more than one step at a time"),
    (f"- embedding: {{embedding_dim: 8, num_embeddings: {VOCAB}}}\n- {{name: e, position_embedding}}\n"
     "- {name: q, linear: 8}\n- {multi_head_attention: {num_heads: 2, causal: true}, inputs: [q, e]}\n"
     f"- linear: {VOCAB}",
     "'multi_head_attention_1' attends to a second input (cross-attention)"),
])
def test_other_networks_rerun_the_window_and_say_why(layers, reason):
    model = build(layers)
    assert why_not(model) == reason
    with pytest.raises(ValueError, match="cannot run step by step"):
        Incremental(model)
    tokens = sampled(model, [1, 2], 2 * WINDOW, 0.8, cached=None)  # None: the re-run path, chosen here
    assert [len(t) for t in tokens] == [2 * WINDOW] * 3
