"""Hostile input through the real CLI: every case ends with its exit code (2: the input is
wrong, 1: the run cannot go on) and a message naming the problem, never a Python traceback,
and nothing the user wrote is deleted.

The cases: each tests/hostile/*.yaml (first lines `# run: CMD` (default: build) and
`# expect: CODE TEXT`), and the generated ones below (files YAML cannot hold, devices,
FIFOs, run folders, damaged checkpoints). All run at once in a thread pool (a case is mostly
a process start), then one parametrised test checks each.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli

HERE = Path(__file__).parent / "hostile"
MLP = ROOT / "specs" / "digits_mlp.yaml"
TINY = ["--set", "train.epochs=1"]
GENERATED = {}


def case(fn):
    GENERATED[fn.__name__] = fn
    return fn


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


SPEC = "name: x\nmodel:\n  input_shape: [2]\n  layers: [linear: 2]\n"


# --- files YAML cannot hold, and files that are not files ---
@case
def nul_in_spec(tmp, run):
    return ["build", write(tmp / "s.yaml", "name: a\0b\n" + SPEC[8:])], 2, "U+0000 (NUL)"


@case
def bell_in_value(tmp, run):
    return ["build", write(tmp / "s.yaml", "name: a\x07b\n" + SPEC[8:])], 2, "s.yaml:1:8"


@case
def not_utf8(tmp, run):
    return ["build", write(tmp / "s.yaml", b"name: \xff\xfe\n")], 2, "not UTF-8"


@case
def integer_of_5000_digits(tmp, run):
    return ["build", write(tmp / "s.yaml", SPEC.replace("linear: 2", "linear: " + "9" * 5000))], 2, \
        "5,000 digits"


@case
def nested_10000_flow_lists(tmp, run):
    return ["build", write(tmp / "s.yaml", "name: x\nmodel: " + "[" * 10000 + "]" * 10000)], 2, \
        "more than 100 levels"


@case
def nested_400_block_mappings(tmp, run):
    text = "name: x\nmodel:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(400))
    return ["build", write(tmp / "s.yaml", text)], 2, "more than 100 levels"


@case
def one_and_a_half_million_keys(tmp, run):
    text = SPEC + "extra:\n" + "".join(f"  k{i}: {i}\n" for i in range(1_500_000))
    return ["build", write(tmp / "s.yaml", text)], 2, "more than the 1.0 MiB"


@case
def dev_zero_as_spec(tmp, run):
    return ["build", "/dev/zero"], 2, "character device"


@case
def fifo_as_spec(tmp, run):
    os.mkfifo(tmp / "pipe.yaml")
    return ["build", tmp / "pipe.yaml"], 2, "FIFO"


@case
def folder_as_spec(tmp, run):
    (tmp / "d.yaml").mkdir()
    return ["build", tmp / "d.yaml"], 2, "is a folder"


@case
def empty_spec(tmp, run):
    return ["build", write(tmp / "s.yaml", "")], 2, "empty"


@case
def set_control_character(tmp, run):
    return ["build", MLP, "--set", "name=a\x01b"], 2, "U+0001"


@case
def set_integer_of_5000_digits(tmp, run):
    return ["build", MLP, "--set", "train.epochs=" + "1" * 5000], 2, "digits"


@case
def set_nesting_too_deep(tmp, run):
    return ["build", MLP, "--set", "name=" + "[" * 500 + "]" * 500], 2, "levels"


@case
def dev_zero_as_npz_data(tmp, run):
    return ["train", MLP, *TINY, "--set", "data.source={npz: /dev/zero}", "--out", tmp], 2, \
        "data.source.npz.path: /dev/zero is a character device"


@case
def fifo_as_csv_data(tmp, run):
    os.mkfifo(tmp / "rows.csv")
    return ["train", MLP, *TINY, "--set", "data.source={csv: {path: rows.csv, target: y}}", "--out", tmp], 2, \
        "FIFO"


@case
def fifo_as_text_data(tmp, run):
    os.mkfifo(tmp / "book.txt")
    return ["build", ROOT / "specs" / "char_lm.yaml", "--set", "data.source.text.path=book.txt"], 2, "FIFO"


# --- run folders: one writer, nothing foreign deleted ---
@case
def overwrite_a_folder_that_is_not_a_run(tmp, run):
    KEEP["overwrite_a_folder_that_is_not_a_run"] = (write(tmp / "out" / "Documents" / "thesis.txt", "years"), "years")
    return ["train", MLP, *TINY, "--out", tmp / "out", "--set", "name=Documents", "--overwrite"], 2, \
        "not a netspec run folder"


@case
def overwrite_a_users_own_spec_yaml(tmp, run):
    KEEP["overwrite_a_users_own_spec_yaml"] = (write(tmp / "out" / "proj" / "spec.yaml", "my: notes\n"), "my: notes\n")
    return ["train", MLP, *TINY, "--out", tmp / "out", "--set", "name=proj", "--overwrite"], 2, "'spec.yaml'"


@case
def overwrite_a_run_holding_a_foreign_file(tmp, run):
    folder = tmp / "out" / "digits-mlp"
    shutil.copytree(run, folder)
    KEEP["overwrite_a_run_holding_a_foreign_file"] = (write(folder / "notes.txt", "mine"), "mine")
    return ["train", MLP, *TINY, "--out", tmp / "out", "--overwrite"], 2, "'notes.txt'"


@case
def run_folder_is_a_dangling_symlink(tmp, run):
    (tmp / "out").mkdir()
    (tmp / "out" / "digits-mlp").symlink_to(tmp / "nowhere")
    return ["train", MLP, *TINY, "--out", tmp / "out"], 2, "dangling symlink"


@case
def run_folder_is_a_file(tmp, run):
    write(tmp / "out" / "digits-mlp", "x")
    return ["train", MLP, *TINY, "--out", tmp / "out"], 2, "not a folder"


@case
def run_folder_in_use(tmp, run):
    folder = tmp / "out" / "digits-mlp"
    folder.mkdir(parents=True)
    fd = os.open(folder / ".netspec.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held by this test process until the case is checked
    os.write(fd, json.dumps({"pid": os.getpid(), "host": "here", "started": 0, "command": "netspec train"}).encode())
    HELD.append(fd)
    return ["train", MLP, *TINY, "--out", tmp / "out"], 2, f"in use by another netspec process (pid {os.getpid()}"


@case
def resume_a_folder_without_a_run(tmp, run):
    return ["train", MLP, *TINY, "--out", tmp / "out", "--resume"], 2, "nothing to resume"


# --- damaged checkpoints and run records ---
def damaged(tmp, run, which="best.pt", data=b""):
    folder = tmp / "out" / "digits-mlp"
    shutil.copytree(run, folder)
    (folder / "checkpoints" / which).unlink()
    if isinstance(data, Path):
        (folder / "checkpoints" / which).symlink_to(data)
    elif isinstance(data, dict):
        torch.save(data, folder / "checkpoints" / which)
    else:
        write(folder / "checkpoints" / which, data)
    return folder


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@case
def evaluate_empty_checkpoint(tmp, run):
    return ["evaluate", damaged(tmp, run)], 1, "empty (0 bytes)"


@case
def resume_empty_checkpoint(tmp, run):
    folder = damaged(tmp, run, "last.pt")
    return ["train", MLP, *TINY, "--out", folder.parent, "--resume"], 1, "empty"


@case
def predict_empty_checkpoint(tmp, run):
    x = np.zeros((2, 1, 8, 8), np.float32)
    np.savez(tmp / "x.npz", x=x)
    return ["predict", damaged(tmp, run), tmp / "x.npz"], 1, "empty (0 bytes)"


@case
def evaluate_text_as_checkpoint(tmp, run):
    return ["evaluate", damaged(tmp, run, data=b"hello, not a checkpoint\n" * 10)], 1, "not a readable checkpoint"


@case
def evaluate_truncated_checkpoint(tmp, run):
    data = (run / "checkpoints" / "best.pt").read_bytes()
    return ["evaluate", damaged(tmp, run, data=data[: len(data) // 2])], 1, "not a readable checkpoint"


@case
def evaluate_checkpoint_missing_keys(tmp, run):
    return ["evaluate", damaged(tmp, run, data={"format": "netspec-checkpoint-1", "epoch": 3})], 1, "has no 'model'"


@case
def evaluate_checkpoint_of_another_kind(tmp, run):
    return ["evaluate", damaged(tmp, run, data={"format": "netspec-checkpoint-1", "generator": {},
                                                "discriminator": {}})], 1, "another kind of run"


@case
def evaluate_foreign_pickle(tmp, run):
    return ["evaluate", damaged(tmp, run, data={"format": "x", "payload": Evil()})], 1, "nothing in a checkpoint ever runs"


@case
def evaluate_dev_zero_checkpoint(tmp, run):
    return ["evaluate", damaged(tmp, run, data=Path("/dev/zero"))], 1, "character device"


@case
def evaluate_corrupt_spec_yaml(tmp, run):
    folder = damaged(tmp, run, "last.pt", (run / "checkpoints" / "last.pt").read_bytes())
    write(folder / "spec.yaml", "name: [unclosed\n")
    return ["evaluate", folder], 2, "damaged"


@case
def resume_with_a_list_as_spec_yaml(tmp, run):
    folder = damaged(tmp, run, "last.pt", (run / "checkpoints" / "last.pt").read_bytes())
    write(folder / "spec.yaml", "- a\n- b\n")
    return ["train", MLP, *TINY, "--out", folder.parent, "--resume"], 2, "must be a mapping"


HELD: list[int] = []  # lock files this process holds while the cases run
KEEP: dict = {}  # case -> (user file, its content), which must survive


def static_cases() -> dict:
    out = {}
    for f in sorted(HERE.glob("*.yaml")):
        head = dict(line[2:].split(": ", 1) for line in f.read_text().splitlines()[:3] if line.startswith("# "))
        code, text = head["expect"].split(" ", 1)
        out[f.stem] = (head.get("run", "build").split() + [f], int(code), text)
    return out


CASES = sorted([*static_cases(), *GENERATED])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run at once: {name: (argv, expected code, expected text, CompletedProcess, tmp)}."""
    run = tmp_path_factory.mktemp("trained")
    r = run_cli("train", MLP, *TINY, "--out", run, "-q")
    assert r.returncode == 0, r.stderr
    run = run / "digits-mlp"
    static = static_cases()
    todo = {}
    for name in CASES:
        tmp = tmp_path_factory.mktemp(name[:40])
        todo[name] = (*(static[name] if name in static else GENERATED[name](tmp, run)), tmp)

    def go(name):
        argv, code, text, tmp = todo[name]
        try:
            return name, (argv, code, text, run_cli(*argv, cwd=tmp, timeout=120), tmp)
        except Exception as e:  # a hang (the FIFO) shows as this case's failure
            return name, (argv, code, text, e, tmp)
    with ThreadPoolExecutor(4) as pool:
        done = dict(pool.map(go, todo))
    for fd in HELD:
        os.close(fd)
    yield done


@pytest.mark.parametrize("name", CASES)
def test_hostile_input_ends_with_a_clear_error(outcomes, name):
    argv, code, text, r, tmp = outcomes[name]
    assert not isinstance(r, Exception), f"{name}: {r}"
    shown = " ".join(str(a)[:60] for a in argv)
    assert "Traceback" not in r.stderr + r.stdout, f"netspec {shown}\n{r.stderr}"
    assert r.returncode == code, f"netspec {shown}: exit {r.returncode}\n{r.stderr}"
    assert text in r.stderr, f"netspec {shown}: wanted {text!r} in\n{r.stderr}"
    assert not (tmp / "PWNED").exists()
    if name in KEEP:  # what the user wrote is still there, untouched
        path, content = KEEP[name]
        assert path.read_text() == content
