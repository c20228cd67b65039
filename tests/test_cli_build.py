"""`netspec build` and friends as a user runs them: real subprocesses of the installed
command. Runs that import torch are started together (they are seconds each)."""
from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, SPECS, run_cli, run_python

LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<path>[^\s:]+): (?P<msg>.+)$")

# the slow runs (torch is imported to build: ~3 s each), all started at once on first use
SEVERAL = [p for p in SPECS if re.search(r"^kind: *(gan|seq2seq)", p.read_text(), re.M)]
CNN = ROOT / "specs" / "digits_cnn.yaml"
TABLES = [CNN, *SEVERAL[:1]]  # the CNN (with --set) and a spec with several networks
SET = ["--set", "model.layers.-1.linear=5", "--set", "model.input_shape=[1, 12, 12]"]
SHAPES = """\
name: shapes
model:
  input_shape: [1, 8, 8]
  layers:
    - flatten
    - conv2d: {out_channels: 4, kernel_size: 3}
    - linear: 10
      name: a
      inputs: input
    - linear: 10
      name: b
      inputs: input
    - add:
      inputs: [a, bb]
"""


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "shapes.yaml").write_text(SHAPES)
    jobs = {("json", p.name): (p, "--json") for p in SPECS}
    for p in TABLES:
        jobs[("table", p.name)] = (p, *(SET if p == CNN else ()))
    jobs[("shapes", "")] = (folder / "shapes.yaml",)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {k: pool.submit(run_cli, "build", *args) for k, args in jobs.items()}
        results = {k: f.result() for k, f in futures.items()}
    results["folder"] = folder
    return results


def no_traceback(r):
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def assert_network_report(rep: dict):
    assert isinstance(rep["parameters"], int) and isinstance(rep["trainable_parameters"], int)
    assert 0 <= rep["trainable_parameters"] <= rep["parameters"]
    assert isinstance(rep["output_shape"], list) and all(isinstance(v, int) and v > 0 for v in rep["output_shape"])
    assert rep["layers"], "no layers"
    for row in rep["layers"]:
        assert {"name", "type", "output_shape", "parameters"} <= set(row)
        assert isinstance(row["name"], str) and isinstance(row["parameters"], int)
        assert all(isinstance(v, int) for v in row["output_shape"])
    assert rep["output_shape"] == rep["layers"][-1]["output_shape"] or "networks" in rep


# --- every shipped spec ---------------------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_build_json_of_every_spec(path, slow_runs):
    r = slow_runs[("json", path.name)]
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["kind"] in ("network", "gan", "seq2seq")
    assert_network_report({**rep, "output_shape": rep["output_shape"]})
    if rep["kind"] == "network":
        assert rep["parameters"] == sum(row["parameters"] for row in rep["layers"])
    else:
        assert set(rep["networks"]) >= ({"generator", "discriminator"} if rep["kind"] == "gan" else {"encoder"})
        for sub in rep["networks"].values():
            assert {"parameters", "trainable_parameters", "output_shape", "layers"} <= set(sub)
            assert sub["parameters"] == sum(row["parameters"] for row in sub["layers"])
        assert rep["parameters"] == sum(sub["parameters"] for sub in rep["networks"].values())


def table_rows(out: str, rows: list[dict]):
    """Every layer has its table row: name, type, shape, parameters."""
    for row in rows:
        assert re.search(rf"^{re.escape(row['name'])}\s+{re.escape(row['type'])}\s+"
                         rf"{re.escape(str(row['output_shape']))}\s+{row['parameters']:,}$", out, re.M), row


@pytest.mark.skipif(not SEVERAL, reason="no spec with several networks in specs/")
def test_build_table_of_several_networks(slow_runs):
    path = SEVERAL[0]
    r = slow_runs[("table", path.name)]
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    rep = json.loads(slow_runs[("json", path.name)].stdout)
    out = r.stdout
    assert out.splitlines()[0].endswith(f"({rep['kind']})")
    assert f"Total parameters:     {rep['parameters']:,}" in out
    assert f"Trainable parameters: {rep['trainable_parameters']:,}" in out
    for name, sub in rep["networks"].items():
        assert f"{name}:" in out.splitlines()
        assert f"{name} parameters: {sub['parameters']:,}" in out
        table_rows(out, sub["layers"])


def test_build_table_with_set(slow_runs):
    """The CNN's table, with the output size and input shape overridden by --set."""
    r = slow_runs[("table", CNN.name)]
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    rep = json.loads(slow_runs[("json", CNN.name)].stdout)  # as written: 8x8 input, 10 outputs
    assert out.splitlines()[0] == "digits-cnn (network)"
    assert re.search(r"^input\s+input\s+\[1, 12, 12\]\s+0$", out, re.M)
    assert re.search(r"^conv2d_1\s+conv2d\s+\[32, 12, 12\]\s+320$", out, re.M)
    assert re.search(r"^linear_1_elu\s+elu\s+\[128\]\s+0$", out, re.M)  # the inline activation's own row
    assert re.search(r"^linear_2\s+linear\s+\[5\]\s+645$", out, re.M)
    first = rep["layers"][0]["parameters"] + rep["layers"][2]["parameters"]  # the convolutions: unchanged
    total = first + (64 * 6 * 6 * 128 + 128) + (128 * 5 + 5)
    assert f"Total parameters:     {total:,}" in out and f"Trainable parameters: {total:,}" in out
    assert "Non-trainable:        0" in out


# --- wrong specs: exit 2, FILE:LINE:COL lines, all problems, no traceback ----------------
def problem_lines(r) -> list[re.Match]:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if len(lines) > 1:
        assert lines[-1] == f"{len(lines) - 1} problems found."
        lines = lines[:-1]
    matches = [LINE.match(ln) for ln in lines]
    assert all(matches), lines
    return matches


def test_shape_errors_at_their_lines(slow_runs):
    r = slow_runs[("shapes", "")]
    no_traceback(r)
    assert r.returncode == 2 and r.stdout == ""
    ms = problem_lines(r)
    assert [(int(m["line"]), m["path"]) for m in ms] == [(6, "model.layers.1.conv2d"), (14, "model.layers.4.inputs")]
    assert ms[0]["file"].endswith("shapes.yaml")
    assert "move it before the flatten" in ms[0]["msg"]
    assert "unknown input 'bb'; did you mean 'b'?" in ms[1]["msg"]


BROKEN = """\
name: broken
model:
  input_shape: [1, 8, 8]
  layers:
    - conv2d: {out_chanels: 8, kernel_size: 3}
    - lienar: 10
    - dropout: 1.5
    - linear: -4
trian: {epochs: 2}
"""


def test_validation_errors_all_at_once(write_spec):
    path = write_spec(BROKEN)
    r = run_cli("build", path)
    no_traceback(r)
    assert r.returncode == 2 and r.stdout == ""
    got = [(m["file"], int(m["line"]), int(m["col"]), m["path"], m["msg"]) for m in problem_lines(r)]
    assert got == [
        (str(path), 5, 16, "model.layers.0.conv2d.out_chanels", "unknown key 'out_chanels'; did you mean 'out_channels'?"),
        (str(path), 6, 7, "model.layers.1", "unknown layer 'lienar'; did you mean 'linear'?"),
        (str(path), 7, 16, "model.layers.2.dropout", "p must be less than 1.0, got 1.5"),
        (str(path), 8, 15, "model.layers.3.linear", "out_features must be greater than 0, got -4"),
        (str(path), 9, 1, "trian", "unknown key 'trian'; did you mean 'train'?"),
    ]


@pytest.mark.parametrize("text,fragment", [
    ("", "the spec is empty"),
    ("- a\n- b\n", "the spec must be a mapping"),
    ("name: a\nmodel: {input_shape: [3], layers: [relu]\n", "YAML syntax error"),
    ("name: a\nname: b\nmodel: {input_shape: [3], layers: [relu]}\n", "duplicate key 'name'"),
])
def test_bad_files(text, fragment, write_spec):
    r = run_cli("build", write_spec(text))
    no_traceback(r)
    assert r.returncode == 2
    (m,) = problem_lines(r)
    assert fragment in m["msg"]


def test_python_tag_never_runs(tmp_path, write_spec):
    marker = tmp_path / "created-by-yaml"
    path = write_spec(f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
                      "model: {input_shape: [3], layers: [relu]}\n")
    r = run_cli("build", path)
    no_traceback(r)
    assert r.returncode == 2 and not marker.exists()
    (m,) = problem_lines(r)
    assert (m["line"], m["col"]) == ("1", "7") and "is not allowed" in m["msg"]


def test_missing_file_and_bad_set(tmp_path):
    r = run_cli("build", tmp_path / "nope.yaml")
    no_traceback(r)
    assert r.returncode == 2 and "no such spec file" in r.stderr
    r = run_cli("build", "specs/digits_mlp.yaml", "--set", "train.epochs=0", "--set", "nonsense")
    no_traceback(r)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "--set: <top>: --set expects PATH=VALUE (e.g. train.epochs=2), got 'nonsense'"]
    r = run_cli("build", "specs/digits_mlp.yaml", "--set", "train.epochs=0")
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["--set train.epochs=0: train.epochs: must be greater than 0, got 0"]


def test_command_line_mistakes_exit_2():
    for args in (("build",), ("build", "specs/digits_mlp.yaml", "--bogus"), ("biuld", "x.yaml")):
        r = run_cli(*args)
        no_traceback(r)
        assert r.returncode == 2, (args, r.stderr)


def test_debug_shows_the_traceback(write_spec):
    r = run_cli("--debug", "build", write_spec("name: a\n"))
    assert r.returncode != 0 and "Traceback" in r.stderr and "SpecError" in r.stderr


# --- cheap commands: no torch -----------------------------------------------------------
def _torch_after(*argv) -> tuple[str, bool]:
    r = run_python(f"""
        import sys
        sys.argv = ["netspec", *{list(argv)!r}]
        from netspec.cli import main
        try:
            main()
        except SystemExit:
            pass
        print("TORCH", "torch" in sys.modules, file=sys.stderr)
    """)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("TORCH "), r.stderr
    return r.stdout, last == "TORCH True"


def test_help_schema_and_validation_do_not_import_torch(write_spec):
    out, torch_loaded = _torch_after("--help")
    assert "build" in out and "schema" in out and not torch_loaded
    out, torch_loaded = _torch_after("schema")
    assert json.loads(out)["$schema"].endswith("2020-12/schema") and not torch_loaded
    out, torch_loaded = _torch_after("build", str(write_spec(BROKEN)))
    assert not torch_loaded  # a spec that fails validation is refused before torch loads


def test_help_and_version_run():
    r = run_cli("--help")
    assert r.returncode == 0 and "netspec build" in r.stdout
    r = run_cli("build", "--help")
    assert r.returncode == 0 and "--json" in r.stdout and "--set" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and "0." in r.stdout
