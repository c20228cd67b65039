"""Shared test helpers: keep this small and generic (every test file uses it)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def netspec_command() -> list[str]:
    """The installed `netspec` console script next to this Python, else `python -m netspec.cli`."""
    script = Path(sys.executable).parent / ("netspec.exe" if os.name == "nt" else "netspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netspec.cli"]


def run_cli(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """Run `netspec ARGS...` in a real subprocess; returns the CompletedProcess (text mode)."""
    return subprocess.run([*netspec_command(), *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_python(code: str, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter (e.g. to check what it imports)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text, name="spec.yaml") -> Path of a file holding the dedented text."""
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path
    return write


@pytest.fixture
def cli():
    """The run_cli helper as a fixture."""
    return run_cli


def invoke(*args) -> subprocess.CompletedProcess:
    """`netspec ARGS...` through click in this process (no torch import per call, so seconds
    faster than run_cli); same exit codes and output. Returns a CompletedProcess."""
    from click.testing import CliRunner

    from netspec.cli import main
    r = CliRunner().invoke(main, [str(a) for a in args])
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)
