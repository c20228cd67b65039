"""The layout is a fact: import-linter's contracts in pyproject.toml (layers with no cycle,
no torch in the spec package) hold for the whole tree."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 2 kept, 0 broken." in r.stdout


def test_files_stay_readable_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "netspec").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700}
    assert not long, f"files over 700 lines: split them ({long})"
