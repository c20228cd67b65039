"""One scheme for option names: --out DIR is a folder (train), -o/--output FILE a file
(sample, predict); old spellings are hidden from --help but still work (tested with a run
in test_gan_scale.py)."""
from __future__ import annotations

import re

import pytest

from conftest import run_cli


def options(command: str) -> dict[str, str]:
    """{option: metavar} from `netspec COMMAND --help`."""
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s+((?:-\w, )?--[\w-]+)(?: ([A-Z=.\[\]|]+[A-Z\]]))?", line)
        if m:
            for name in m.group(1).split(", "):
                out[name] = m.group(2) or ""
    return out


def test_folders_are_out_dir_and_files_are_o_output_file():
    train, sample, predict = options("train"), options("sample"), options("predict")
    assert train["--out"] == "DIR"
    assert "-o" not in train and "--output" not in train
    for cmd in (sample, predict):
        assert cmd["-o"] == cmd["--output"] == "FILE"
        assert "--out" not in cmd  # the deprecated spelling is hidden
    assert "-n" in sample and "--n" in sample


@pytest.mark.parametrize("command", ["sample", "predict", "evaluate"])
def test_run_folder_argument_is_called_run(command):
    assert re.search(r"Usage: netspec \w+ \[OPTIONS\] RUN\b", run_cli(command, "--help").stdout)
