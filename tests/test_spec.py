"""The spec language: YAML loading, validation, error messages and positions, --set paths.
Fast: nothing here builds a network."""
from __future__ import annotations

import textwrap

import pytest

import netspec
from netspec.errors import Problem, SpecError
from netspec.spec import get_path, load, parse_set, set_path
from netspec.spec.yamlio import parse

from conftest import SPECS, run_python

MINIMAL = """\
name: tiny
model:
  input_shape: [4]
  layers:
    - linear: 3
"""


def problems(text: str, overrides=()) -> list[Problem]:
    with pytest.raises(SpecError) as e:
        load(textwrap.dedent(text), list(overrides))
    return e.value.problems


def one(text: str, overrides=()) -> Problem:
    ps = problems(text, overrides)
    assert len(ps) == 1, [str(p) for p in ps]
    return ps[0]


def net(layers: str, input_shape="[4]", extra="") -> str:
    """A spec text with the given layer list (YAML flow or block text)."""
    return f"name: t\nmodel:\n  input_shape: {input_shape}\n  layers: {layers}\n{extra}"


# --- loading --------------------------------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    spec = netspec.load(str(path))
    assert spec.name and spec.kind == "network" or spec.kind in ("gan", "seq2seq")


def test_load_from_path_text_and_dict(write_spec):
    path = write_spec(MINIMAL)
    a = netspec.load(path)
    b = netspec.load(str(path))
    c = netspec.load(MINIMAL)
    d = netspec.load({"name": "tiny", "model": {"input_shape": [4], "layers": [{"linear": 3}]}})
    for s in (a, b, c, d):
        assert s.name == "tiny"
        assert s.model.layers[0].type == "linear" and s.model.layers[0].out_features == 3


def test_defaults_and_component_forms():
    spec = load(net("""
    - linear: {out_features: 8, activation: relu, init: {truncated_normal: 0.01}}
    - relu
    - leaky_relu: 0.2
    - dropout: 0.5
    - reshape: [2, 4]
    - flatten:
      name: f
    - linear: 2
      name: out
      inputs: f
"""))
    lin, relu, leaky, drop, reshape, flat, out = spec.model.layers
    assert lin.activation.type == "relu" and lin.init.type == "truncated_normal" and lin.init.std == 0.01
    assert lin.bias is True and relu.type == "relu"
    assert leaky.negative_slope == 0.2 and drop.p == 0.5 and reshape.shape == [2, 4]
    assert flat.name == "f" and out.inputs == "f" and out.out_features == 2
    assert spec.seed == 0 and spec.train.epochs == 10 and spec.model.input_dtype == "float"


def test_missing_file_is_a_spec_error(tmp_path):
    p = one(str(tmp_path / "nope.yaml"))
    assert "no such spec file" in p.message
    (tmp_path / "cnn.yaml").write_text(MINIMAL)
    p = one(str(tmp_path / "cnn"))  # a file name without its extension
    assert p.message == f"no such spec file: {tmp_path / 'cnn'}; did you mean '{tmp_path / 'cnn.yaml'}'?"
    p = one(str(tmp_path))
    assert p.message.endswith("is a folder; give a spec file (.yaml) in it")


def test_yaml_anchors_and_merge_keys_are_plain_data():
    spec = load("""\
name: a
model:
  input_shape: [3]
  blocks:
    b: [{linear: &lin {out_features: 4, bias: false}}]
  layers:
    - linear: {<<: *lin, out_features: 4}
    - linear: *lin
""".replace("{<<: *lin, out_features: 4}", "{<<: *lin}"))
    assert [(x.out_features, x.bias) for x in spec.model.layers] == [(4, False), (4, False)]
    spec = load("name: a\nmodel:\n  input_shape: &s [3]\n  layers: [{reshape: *s}]\n")
    assert spec.model.layers[0].shape == [3]


# --- bad YAML -------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "null\n", "~\n"])
def test_empty_file(text, write_spec):
    p = one(str(write_spec(text)))
    assert "empty" in p.message and "'name' and 'model'" in p.message
    assert (p.line, p.col) == (1, 1)


@pytest.mark.parametrize("text,kind", [("- name: a\n- model: b\n", "list"), ("42\n", "int"),
                                       ("just words\n", "str")])
def test_top_level_must_be_a_mapping(text, kind, write_spec):
    p = one(str(write_spec(text)))
    assert f"must be a mapping (name: ..., model: ...), not a {kind}" in p.message


def test_yaml_syntax_error_reports_its_line(write_spec):
    path = write_spec("name: a\nmodel:\n  input_shape: [1, 2\n  layers: [relu]\n")
    p = one(str(path))
    assert p.file == str(path)
    assert p.message.startswith("YAML syntax error")
    assert p.line in (3, 4)  # PyYAML notices the missing ']' when the next line starts
    assert "started at line 3, column 16" in p.message
    assert str(p).startswith(f"{path}:{p.line}:{p.col}: ")


def test_yaml_syntax_error_tab_hint():
    p = one("name: a\n\tmodel: 3\n")
    assert (p.line, p.col) == (2, 1) and "tabs" in p.message


def test_yaml_syntax_error_mapping_values_hint():
    p = one("name: a: b\nmodel: {}\n")
    assert p.line == 1 and "quote" in p.message


def test_yaml_syntax_error_bare_name_with_keys_below():
    p = one("name: a\nmodel:\n  input_shape: [3]\n  layers:\n    - relu\n      name: f\n")
    assert p.line == 6 and p.message.endswith("(to give 'relu' keys beside it, write '- relu:' with a colon)")


def test_duplicate_keys_are_errors_with_both_lines():
    ps = problems("""\
name: a
model:
  input_shape: [3]
  layers:
    - conv1d: {out_channels: 2, kernel_size: 3, out_channels: 4}
name: b
""")
    msgs = {(p.path, p.line, p.col): p.message for p in ps}
    assert msgs[("name", 6, 1)] == "duplicate key 'name' (first written at line 1); keep one"
    assert msgs[("model.layers.0.conv1d.out_channels", 5, 49)].startswith("duplicate key 'out_channels'")


# --- YAML tags that build Python objects ----------------------------------------------
@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system", "!!python/object/apply:subprocess.call",
    "!!python/object/new:os.system", "!!python/name:os.system", "!!python/module:os"])
def test_python_tags_are_refused_and_never_run(tag, tmp_path, write_spec):
    marker = tmp_path / "PWNED"
    cmd = f'["touch {marker}"]' if "apply" in tag or "new" in tag else "''"
    path = write_spec(f"name: {tag} {cmd}\nmodel: {{input_shape: [3], layers: [relu]}}\n")
    p = one(str(path))
    assert (p.path, p.line, p.col) == ("name", 1, 7)
    assert f"YAML tag '{tag}' is not allowed" in p.message
    assert not marker.exists()


def test_python_tag_inside_a_layer_and_on_a_key(tmp_path):
    marker = tmp_path / "PWNED2"
    ps = problems(f"""\
name: a
model:
  input_shape: [3]
  layers:
    - linear: !!python/object/apply:os.system ["touch {marker}"]
    - !!python/str relu
""")
    assert [(p.line, p.col) for p in ps] == [(5, 15), (6, 7)]
    assert all("is not allowed" in p.message for p in ps)
    assert not marker.exists()


def test_custom_tags_are_refused():
    p = one("name: !secret a\nmodel: {input_shape: [3], layers: [relu]}\n")
    assert "YAML tag '!secret' is not allowed" in p.message


def test_recursive_alias_is_an_error_not_a_crash():
    p = one("name: a\nmodel: &m [*m]\n")
    assert "recursive" in p.message and p.line == 2


def test_alias_bomb_is_refused_quickly():
    lines = ["name: a", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines.append("model: {input_shape: [3], layers: [relu]}")
    p = one("\n".join(lines) + "\n")
    assert "more than" in p.message and "aliases" in p.message


# --- unknown names: closest valid name suggested ---------------------------------------
def test_typos_in_layer_argument_and_top_level_names_all_at_once(write_spec):
    path = write_spec("""\
        name: t
        modle: 1
        model:
          input_shape: [1, 8, 8]
          layers:
            - conv2d: {out_chanels: 8, kernel_size: 3}
            - lienar: 10
            - max_pool2d: {kernel_size: 2, strid: 2}
        optimiser: {adam: {lr: 0.1}}
        """)
    ps = problems(str(path))
    got = [(p.line, p.col, p.path, p.message) for p in ps]
    assert got == [
        (2, 1, "modle", "unknown key 'modle'; did you mean 'model'?"),
        (6, 16, "model.layers.0.conv2d.out_chanels", "unknown key 'out_chanels'; did you mean 'out_channels'?"),
        (7, 7, "model.layers.1", "unknown layer 'lienar'; did you mean 'linear'?"),
        (8, 36, "model.layers.2.max_pool2d.strid", "unknown key 'strid'; did you mean 'stride'?"),
        (9, 1, "optimiser", "unknown key 'optimiser'; did you mean 'optimizer'?"),
    ]
    assert str(ps[2]) == f"{path}:7:7: model.layers.1: unknown layer 'lienar'; did you mean 'linear'?"


@pytest.mark.parametrize("text,expect", [
    ("optimizer: adamm", "unknown optimizer 'adamm'; did you mean 'adam'?"),
    ("loss: {cross_entropi: 0.1}", "unknown loss 'cross_entropi'; did you mean 'cross_entropy'?"),
    ("train: {epocs: 3}", "unknown key 'epocs'; did you mean 'epochs'?"),
    ("train: {metrics: [acuracy]}", "unknown metric 'acuracy'; did you mean 'accuracy'?"),
    ("train: {early_stopping: {patiense: 2}}", "unknown key 'patiense'; did you mean 'patience'?"),
    ("data: {source: digitz}", "unknown data source 'digitz'; did you mean 'digits'?"),
])
def test_typos_in_other_sections(text, expect):
    p = one(MINIMAL + text + "\n")
    assert p.message == expect


def test_typo_in_activation_and_init_names():
    ps = problems(net("[{linear: {out_features: 3, activation: rellu, init: {xavier_uniformm: 1}}}]"))
    assert [p.message for p in ps] == ["unknown activation 'rellu'; did you mean 'relu'?",
                                       "unknown initializer 'xavier_uniformm'; did you mean 'xavier_uniform'?"]


def test_inline_activation_takes_no_wiring():
    p = one(net("[{linear: {out_features: 3, activation: {relu: {name: r}}}}]"))
    assert p.path == "model.layers.0.linear"
    assert p.message.startswith("an activation inside a layer takes no name or inputs")


def test_literal_typo_gets_a_suggestion():
    p = one(net("[{upsample: {scale_factor: 2, mode: neareest}}]", "[1, 4]"))
    assert p.message == ("'neareest' is not one of 'nearest', 'bilinear', 'bicubic', 'linear' or "
                         "'nearest-exact'; did you mean 'nearest'?")


def test_unknown_kind():
    p = one(MINIMAL + "kind: netwrk\n")
    assert p.path == "kind" and "did you mean 'network'?" in p.message


# --- wrong types, sizes and ranges ----------------------------------------------------
@pytest.mark.parametrize("layer,message", [
    ("{linear: abc}", "out_features: expected a whole number"),
    ("{linear: 2.5}", "out_features: expected a whole number"),
    ("{linear: 0}", "out_features must be greater than 0, got 0"),
    ("{linear: -3}", "out_features must be greater than 0, got -3"),
    ("{linear: true}", "out_features: expected a whole number"),
    ("{linear: [3]}", "out_features: expected a whole number"),
    ("{conv1d: {out_channels: true, kernel_size: 3}}", "expected a whole number, got true (YAML reads "
                                                       "true/false/yes/no/on/off as booleans)"),
    ("{linear: {out_features: 3, bias: maybe}}", "expected true or false, got 'maybe'"),
    ("{dropout: 1.0}", "p must be less than 1.0, got 1.0"),
    ("{dropout: 1.5}", "p must be less than 1.0, got 1.5"),
    ("{dropout: -0.1}", "p must be at least 0.0, got -0.1"),
    ("{dropout: .nan}", "p: expected a finite number, got nan"),
    ("{leaky_relu: .inf}", "negative_slope: expected a finite number, got inf"),
    ("{gelu: {approximate: yes}}", "expected 'none' or 'tanh', got true (YAML reads true/false/yes/no/on/off "
                                   "as booleans)"),
    ("{conv1d: {out_channels: 0, kernel_size: 3}}", "must be greater than 0, got 0"),
    ("{conv1d: {out_channels: 2, kernel_size: 0}}", "must be greater than 0, got 0"),
    ("{conv1d: {out_channels: 2, kernel_size: 3, padding: -1}}", "must be at least 0, got -1"),
    ("{conv1d: {out_channels: 2, kernel_size: 3, padding: foo}}",
     "expected a whole number, a list or one of 'same', 'valid', got 'foo'"),
    ("{conv1d: {out_channels: 2, kernel_size: 2.5}}", "expected a whole number or a list, got 2.5"),
    ("{lstm: {hidden_size: 4, output: final}}", "expected one of 'sequence', 'last' or 'state', got 'final'"),
    ("{reshape: []}", "shape: needs at least 1 item, got 0"),
    ("{block: {use: b, repeat: 0}}", "must be greater than 0, got 0"),
])
def test_wrong_values_are_named_plainly(layer, message):
    p = one(net(f"[{layer}]"))
    assert p.message.startswith(message), p.message
    if "abc" in layer or "true" in layer:
        assert "got 'abc'" in p.message or "got true (YAML reads" in p.message
    assert p.path.startswith("model.layers.0")
    assert "Input should" not in p.message  # pydantic's raw wording is reworded


@pytest.mark.parametrize("shape,message", [
    ("[0]", "must be greater than 0, got 0"), ("[1, -8]", "must be greater than 0, got -8"),
    ("[]", "needs at least 1 item, got 0"), ("3", "expected a list, got 3"),
    ("[true]", "expected a whole number, got true")])
def test_bad_input_shape(shape, message):
    p = one(net("[relu]", shape))
    assert p.message.startswith(message) and p.path.startswith("model.input_shape")


def test_a_value_failing_every_union_member_is_one_problem():
    ps = problems(net("[{conv1d: {out_channels: 2, kernel_size: [3, -1]}}]", "[1, 8]"))
    assert [(p.path, p.message) for p in ps] == [
        ("model.layers.0.conv1d.kernel_size.1", "must be greater than 0, got -1")]
    ps = problems(net("[{linear: 3, inputs: []}]"))
    assert [(p.path, p.message) for p in ps] == [("model.layers.0.inputs", "needs at least 1 item, got 0")]


@pytest.mark.parametrize("text,message", [
    ("name: ''\nmodel: {input_shape: [3], layers: [relu]}", "must not be empty"),
    ("name: my run\nmodel: {input_shape: [3], layers: [relu]}", "'my run' is not a valid name"),
    ("name: 3\nmodel: {input_shape: [3], layers: [relu]}", "expected a string, got 3"),
    ("name: a\nmodel: 3", "expected a mapping (key: value), got 3"),
    ("name: a\nmodel: {input_shape: [3], layers: []}", "needs at least 1 item, got 0"),
    ("name: a\nmodel: {input_shape: [3], layers: relu}", "expected a list, got 'relu'"),
    ("name: a\nseed: 1.5\nmodel: {input_shape: [3], layers: [relu]}", "expected a whole number, got 1.5"),
])
def test_top_level_values(text, message):
    p = one(text + "\n")
    assert p.message.startswith(message), p.message


def test_required_keys():
    ps = problems("seed: 1\n")
    assert sorted(p.message for p in ps) == ["'model' is required", "'name' is required"]
    p = one(net("[{conv2d: {out_channels: 3}}]"))
    assert p.message == "'kernel_size' is required" and p.path == "model.layers.0.conv2d.kernel_size"


def test_a_misspelled_required_key_is_reported_once():
    p = one(net("[{conv2d: {out_channel: 3, kernel_size: 3}}]", "[1, 4, 4]"))
    assert p.message == "unknown key 'out_channel'; did you mean 'out_channels'?"


def test_dropout_range_edges_are_valid():
    spec = load(net("[{dropout: 0}, {dropout: 0.0}, {dropout: 0.999}]"))
    assert [layer.p for layer in spec.model.layers] == [0, 0, 0.999]


def test_upsample_needs_exactly_one_of_scale_factor_and_size():
    p = one(net("[{upsample: {scale_factor: 2, size: 4}}]", "[1, 4]"))
    assert p.message == "give exactly one of scale_factor or size"


# --- malformed layer items ------------------------------------------------------------
@pytest.mark.parametrize("item,message", [
    ("{linear: 64, activation: relu}",
     "'activation' is an argument of 'linear': write it inside, 'linear: {out_features: 64, activation: relu}'"),
    ("{linear: 3, nmae: x}", "unknown key 'nmae' beside 'linear'; did you mean 'name'?"),
    ("{relu: 3}", "'relu' takes no arguments; write just 'relu'"),
    ("{name: x}", "this item has only name; add the layer itself"),
    ("{relu: null, linear: 3}", "one item holds several layers (relu, linear)"),
    ("{lineer: 3, foo: 2}", "a layer is written as its name or as a one-key mapping 'name: arguments'; none of the keys lineer, foo is a layer; did you mean 'linear'?"),
    ("3", "expected a layer (a name such as 'relu', or 'name: arguments'), got int 3"),
    ("{linear: {type: conv2d, out_features: 3}}", "'type' is not an argument of 'linear'"),
])
def test_malformed_items_say_how_to_write_them(item, message):
    p = one(net(f"[{item}]"))
    assert p.path == "model.layers.0"
    assert p.message.startswith(message), p.message
    assert "{{" not in p.message


# --- positions ------------------------------------------------------------------------
def test_exact_positions(write_spec):
    path = write_spec("""\
        name: pos
        model:
          input_shape: [1, 8, 8]
          layers:
            - conv2d: {out_channels: 8, kernel_size: 3}
            - relu
            - linear: {out_features: -1}
            - dropout: 2
        train:
          epochs: zero
        """)
    got = [str(p) for p in problems(str(path))]
    assert got == [
        f"{path}:7:30: model.layers.2.linear.out_features: must be greater than 0, got -1",
        f"{path}:8:16: model.layers.3.dropout: p must be less than 1.0, got 2",
        f"{path}:10:11: train.epochs: expected a whole number, got 'zero'",
    ]


def test_problems_are_sorted_by_position():
    ps = problems("train: {epochs: 0}\nname: ''\nmodel: {input_shape: [0], layers: [relu]}\n")
    assert [p.line for p in ps] == sorted(p.line for p in ps) and len(ps) == 3


def test_problem_str_without_position():
    assert str(Problem("a.b", "bad")) == "<spec>: a.b: bad"
    assert str(Problem("", "bad", "f.yaml", 3, 4)) == "f.yaml:3:4: <top>: bad"


# --- --set paths ----------------------------------------------------------------------
MLP = """\
name: mlp
model:
  input_shape: [1, 8, 8]
  layers:
    - flatten
    - linear: {out_features: 128, activation: relu}
    - dropout: 0.5
    - linear: 64
    - relu
    - linear: 10
loss: bce
optimizer: {adam: {lr: 0.001}}
"""


@pytest.mark.parametrize("item,check", [
    ("model.layers.3.linear.out_features=32", lambda s: s.model.layers[3].out_features == 32),
    ("model.layers.3.linear=32", lambda s: s.model.layers[3].out_features == 32),
    ("model.layers.-1.linear=3", lambda s: s.model.layers[5].out_features == 3),
    ("model.layers.1.linear.out_features=7", lambda s: s.model.layers[1].out_features == 7),
    ("model.layers.1.linear.activation=tanh", lambda s: s.model.layers[1].activation.type == "tanh"),
    ("model.layers.3.linear.init=zeros", lambda s: s.model.layers[3].init.type == "zeros"),
    ("model.layers.2.dropout.p=0.1", lambda s: s.model.layers[2].p == 0.1),
    ("model.layers.2=relu", lambda s: s.model.layers[2].type == "relu"),
    ("model.layers.4.relu.name=act", lambda s: s.model.layers[4].name == "act"),
    ("model.layers.0.flatten.name=f", lambda s: s.model.layers[0].name == "f"),
    ("optimizer.adam.lr=0.01", lambda s: s.optimizer.lr == 0.01),
    ("optimizer=sgd", lambda s: s.optimizer.type == "sgd"),
    ("loss.bce.reduction=sum", lambda s: s.loss.reduction == "sum"),
    ("train.epochs=2", lambda s: s.train.epochs == 2),
    ("train.early_stopping.patience=3", lambda s: s.train.early_stopping.patience == 3),
    ("model.input_shape=[64]", lambda s: s.model.input_shape == [64]),
    ("model.input_shape.0=2", lambda s: s.model.input_shape == [2, 8, 8]),
    ("name=other", lambda s: s.name == "other"),
    ("seed= 7 ", lambda s: s.seed == 7),
])
def test_set_paths(item, check):
    assert check(load(MLP, [item]))


def test_several_sets_apply_in_order():
    spec = load(MLP, ["train.epochs=2", "train.epochs=5", "train.batch_size=8"])
    assert (spec.train.epochs, spec.train.batch_size) == (5, 8)


def test_set_does_not_touch_other_sources(write_spec):
    path = write_spec(MLP)
    load(str(path), ["train.epochs=2"])
    assert "epochs" not in path.read_text()


@pytest.mark.parametrize("item,path,message", [
    ("model.layers.3.linear.out_features=-1", "model.layers.3.linear.out_features",
     "must be greater than 0, got -1"),
    ("model.layers.3.linear.out_featurs=3", "model.layers.3.linear.out_featurs",
     "unknown key 'out_featurs'; did you mean 'out_features'?"),
    ("model.layers.0.flatten.foo=1", "model.layers.0.flatten.foo", "unknown key 'foo'; valid: inputs, name"),
    ("model.layerz.0=3", "model.layerz", "unknown key 'layerz'; did you mean 'layers'?"),
    ("train.epochs=true", "train.epochs", "expected a whole number, got true"),
    ("optimizer.adam.lr=fast", "optimizer.adam.lr", "expected a number, got 'fast'"),
    ("model.layers.1.linear.activation=relx", "model.layers.1.linear.activation",
     "unknown activation 'relx'; did you mean 'relu'?"),
    ("name=", "name", "expected a string, got nothing (null)"),
])
def test_set_values_are_validated_like_the_file(item, path, message):
    p = one(MLP, [item])
    assert p.file == f"--set {item}" and p.line is None
    assert p.path == path
    assert p.message.startswith(message), p.message
    assert str(p).startswith(f"--set {item}: {path}: ")


@pytest.mark.parametrize("item,message", [
    ("noequals", "--set expects PATH=VALUE (e.g. train.epochs=2), got 'noequals'"),
    ("model.layers.9.linear=3", "'model.layers' is a list of 6 items; '9' is not an index in it"),
    ("model.layers.x=3", "'model.layers' is a list of 6 items; 'x' is not an index in it"),
    ("model.layers.3.linear.out_features.x=3",
     "'model.layers.3.linear.out_features' holds a value, not a mapping; cannot go into it"),
    ("name.first=a", "'name' holds a value, not a mapping; cannot go into it"),
    ("train.epochs=[", "VALUE '[' is not valid YAML"),
    ("train.epochs=a: b", "VALUE 'a: b' is not valid YAML"),
    ("train.epochs=!!python/object/apply:os.system [ls]", "is not allowed"),
    ("=3", "'' is not a dotted path"),
    ("a..b=3", "'a..b' is not a dotted path"),
])
def test_bad_set_items(item, message):
    p = one(MLP, [item])
    assert message in p.message, p.message
    assert p.file.startswith("--set")


def test_bad_set_items_are_all_reported():
    ps = problems(MLP, ["nope", "model.layers.99=1", "train.epochs=3"])
    assert len(ps) == 2


def test_set_and_file_problems_together(write_spec):
    path = write_spec(MLP.replace("lr: 0.001", "lr: -1"))
    ps = problems(str(path), ["train.epochs=0"])
    assert {(p.file, p.path) for p in ps} == {(str(path), "optimizer.adam.lr"),
                                              ("--set train.epochs=0", "train.epochs")}


def test_parse_set_reads_yaml_values():
    assert parse_set("a.b=3") == ("a.b", 3)
    assert parse_set("a=0.5") == ("a", 0.5)
    assert parse_set("a=[1, 2]") == ("a", [1, 2])
    assert parse_set("a={x: 1}") == ("a", {"x": 1})
    assert parse_set("a=x=y") == ("a", "x=y")
    assert parse_set("a='3'") == ("a", "3")
    assert parse_set("a=") == ("a", None)


def test_set_path_and_get_path_on_raw_data():
    data = parse(MLP).data
    assert set_path(data, "model.layers.3.linear.out_features", 5) == ("model", "layers", 3, "linear",
                                                                        "out_features")
    assert data["model"]["layers"][3] == {"linear": {"out_features": 5}}
    assert get_path(data, "model.layers.3.linear.out_features") == 5
    set_path(data, "model.layers.4.relu.name", "r")
    assert data["model"]["layers"][4] == {"relu": {"name": "r"}}
    set_path(data, "train.epochs", 3)
    assert data["train"] == {"epochs": 3}
    with pytest.raises(IndexError):
        set_path(data, "model.layers.20.linear", 1)


# --- cheap imports --------------------------------------------------------------------
def test_validation_and_schema_do_not_import_torch():
    r = run_python("""
        import sys
        import netspec
        from netspec.spec.schema import json_schema
        spec = netspec.load("specs/digits_cnn.yaml", ["train.epochs=2"])
        json_schema()
        try:
            netspec.load("name: a\\nmodel: {input_shape: [3], layers: [lienar: 3]}")
        except netspec.SpecError as e:
            assert "did you mean 'linear'" in str(e)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "tensorboard", "sklearn"))
        print(heavy)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_keys_that_look_like_pydantic_internals():
    """pydantic names union members like 'list[int]'; a user's key of that look is still a key."""
    ps = problems("n[ame: dag\nlist[x]: 1\nmodel: {input_shape: [3], layers: [relu]}\n")
    assert [(p.path, p.line) for p in ps] == [("n[ame", 1), ("list[x]", 2)]
    assert ps[0].message == "unknown key 'n[ame'; did you mean 'name'?"


@pytest.mark.parametrize("written,meant", [
    ("Dense", "linear"), ("fully_connected", "linear"), ("Conv2D", "conv2d"), ("MaxPooling2D", "max_pool2d"),
    ("BatchNormalization", "batch_norm"), ("LSTM", "lstm"), ("SimpleRNN", "rnn"), ("LeakyReLU", "leaky_relu"),
    ("Conv2DTranspose", "conv_transpose2d"), ("UpSampling2D", "upsample"), ("Concatenate", "concat")])
def test_other_libraries_layer_names_are_recognised(written, meant):
    p = one(net(f"[{written}]"))
    assert p.message == f"unknown layer '{written}'; did you mean '{meant}'?"


def test_an_unknown_name_with_nothing_close_lists_the_known_ones():
    p = one(net("[softplus]"))
    assert p.message.startswith("unknown layer 'softplus'; known layers: adaptive_avg_pool2d, add, ")
    p = one(MINIMAL + "loss: categorical_crossentropy\n")
    assert p.message == "unknown loss 'categorical_crossentropy'; did you mean 'cross_entropy'?"
