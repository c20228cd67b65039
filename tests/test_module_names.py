"""The summary's layer names are the module's submodule paths, for every kind: each name
that `netspec build` prints resolves with get_submodule on netspec.build's module (the
README promises submodules named as in the spec)."""
from __future__ import annotations

import pytest
import torch

import netspec
from netspec.kinds import report

from conftest import SPECS
from test_seq2seq import load as load_s2s


def _resolve_all(spec):
    rep, model = report(spec), netspec.build(spec)
    names = [r["name"] for r in rep["layers"]]
    assert names
    for name in names:
        assert isinstance(model.get_submodule(name), torch.nn.Module), name
    return rep, model


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_summary_name_is_a_submodule_path(path):
    _resolve_all(netspec.load(path))


def test_seq2seq_layers_after_attention_continue_the_count_and_load_old_checkpoints():
    """Decoder layers after attention are compiled on their own; they used to be numbered
    from 1 again under `decoder.tail` (`tail.linear_1` after a `linear_1` before the LSTM).
    Now they continue the count as direct submodules, and a state dict with the old
    `head.`/`tail.` keys still loads."""
    spec = load_s2s(dec="linear: 8\n    - lstm: 16\n    - linear: {out_features: 12, activation: tanh}\n"
                        "    - dropout: 0.1\n    - linear: 10", extra="  attention: general")
    rep, model = _resolve_all(spec)
    names = [r["name"] for r in rep["networks"]["decoder"]["layers"]]
    assert names == ["bridge", "embedding_1", "linear_1", "lstm_1", "attention", "linear_2", "linear_2_tanh",
                     "dropout_1", "linear_3", "projection"]
    dec = model["decoder"]
    old_name = {"embedding_1": "head.embedding_1", "linear_1": "head.linear_1", "lstm_1": "head.lstm_1",
                "linear_2": "tail.linear_1", "linear_3": "tail.linear_2"}
    old = {}
    for k, v in dec.state_dict().items():
        layer, _, rest = k.partition(".")
        old[f"{old_name.get(layer, layer)}.{rest}"] = v + 1
    assert "tail.linear_1.weight" in old and "linear_2.weight" not in old
    fresh = netspec.build(spec)["decoder"]
    fresh.load_state_dict(old)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, dec.state_dict()[k] + 1), k
