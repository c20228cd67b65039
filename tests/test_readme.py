"""The README's commands run as written, in order, on a fresh copy of the repository.

Every `console` block (lines starting with `$ `), every `bash` block (each line) and the
`python` blocks are taken from README.md and run one after another in a copy of the tracked
files, with this environment's bin folder first on PATH (as after `. .venv/bin/activate`).
Changes, for time only: each `netspec train` gets `--set train.epochs=1` (plus a smaller
LSTM for the char-level model, see FASTER), one torch thread, and a private quality-
classifier cache. Commands that cannot run in a test are skipped by SKIP, each with its
reason; anything else the README gains is run too. A console block whose command prints
a problem list (exit 2) must print exactly the lines the README shows.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


from conftest import ROOT

SKIP = {  # regex on the command -> why it is not run
    r"^python3 -m venv ": "installs packages into a new environment; this test runs in the one it was started from",
    r"^\. \.venv/bin/activate": "this test puts the environment's bin folder first on PATH instead",
    r"^tensorboard ": "a server that does not exit; tests/test_hparams_tensorboard.py starts one and queries it",
    r"^torchrun ": "needs two machines (data parallelism is tested in tests/test_ddp.py)",
}
FASTER = {  # spec file -> extra overrides for its `netspec train`, for time only
    "specs/char_lm.yaml": ["model.layers.1.lstm.hidden_size=32", "model.layers.1.lstm.num_layers=1"],
    "specs/sort_letters.yaml": ["data.source.sort_letters.samples=1000"],
}
SHORTER = {  # regex on the command -> (its text, what runs instead), for time only: text generation
    # re-reads its whole window per character, ~0.1 s each on a busy 2-core machine
    r"^netspec sample runs/char-lm ": ("--length 300", "--length 30"),
}
EXIT_CODES = {r"^netspec build examples/typo\.yaml$": 2}  # the error example


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def _join(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def steps(text: str) -> list[dict]:
    """Each command (or Python block) with the output lines the README shows for it."""
    out = []
    for lang, body in blocks(text):
        if lang == "python":
            out.append({"python": body, "shown": []})
        elif lang == "console":
            for line in _join(body.splitlines()):
                if line.startswith("$ "):
                    out.append({"command": line[2:], "shown": []})
                elif out and "command" in out[-1]:
                    out[-1]["shown"].append(line)
        elif lang == "bash":
            out += [{"command": line, "shown": []} for line in _join(body.splitlines())
                    if line.strip() and not line.lstrip().startswith("#")]
    return out


def _uncomment(command: str) -> str:
    return re.sub(r"\s+#\s.*$", "", command).strip()


def prepared(command: str) -> tuple[str | None, str]:
    """(the command to run, or None; the reason it is skipped)."""
    command = _uncomment(command)
    for pattern, why in SKIP.items():
        if re.search(pattern, command):
            return None, why
    def faster(m):  # right after `netspec train SPEC`, so a chained `&& netspec export` is untouched
        if "--dry-run" in command:
            return m.group(0)
        return m.group(0) + "".join(f" --set {s}" for s in ["train.epochs=1", *FASTER.get(m.group(1), [])])
    command = re.sub(r"\bnetspec train (\S+)", faster, command)
    for pattern, (text, instead) in SHORTER.items():
        if re.search(pattern, command):
            command = command.replace(text, instead)
    return command, ""


def fresh_copy(dest: Path) -> Path:
    """The repository's tracked files (a fresh clone's), or the tree minus run output."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [f for f in files.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        names = None
    if names:
        for name in names:
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("runs", ".venv", "__pycache__", ".git", "*.egg-info"))
    return dest


def test_readme_steps_are_found():
    found = steps((ROOT / "README.md").read_text(encoding="utf-8"))
    commands = [_uncomment(s["command"]) for s in found if "command" in s]
    assert "netspec train specs/digits_cnn.yaml" in commands
    assert any(c.startswith("netspec predict runs/digits-cnn ") for c in commands)
    assert sum("python" in s for s in found) >= 1
    assert prepared("netspec train specs/sort_letters.yaml && netspec export runs/sort-letters")[0] == (
        "netspec train specs/sort_letters.yaml --set train.epochs=1 --set data.source.sort_letters.samples=1000"
        " && netspec export runs/sort-letters")
    assert prepared("netspec train specs/char_lm.yaml   # a comment")[0] == (
        "netspec train specs/char_lm.yaml --set train.epochs=1 --set model.layers.1.lstm.hidden_size=32 "
        "--set model.layers.1.lstm.num_layers=1")
    assert prepared("tensorboard --logdir runs")[0] is None
    assert prepared('netspec sample runs/char-lm --prime "A" --length 300')[0].endswith("--length 30")


def test_the_quick_start_yaml_is_the_shipped_spec():
    import netspec
    from netspec.spec import written
    (shown,) = [body for lang, body in blocks((ROOT / "README.md").read_text(encoding="utf-8"))
                if lang == "yaml" and body.startswith("# specs/digits_cnn.yaml")]
    assert written(netspec.load(shown)) == written(netspec.load(ROOT / "specs" / "digits_cnn.yaml"))


def test_readme_commands_run_in_order_on_a_fresh_copy(tmp_path):
    repo = fresh_copy(tmp_path / "netspec")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(repo), "NETSPEC_THREADS": "1", "NETSPEC_CACHE": str(tmp_path / "cache")}
    ran, skipped, times = [], [], []
    for step in steps((repo / "README.md").read_text(encoding="utf-8")):
        start = time.monotonic()
        if "python" in step:
            r = subprocess.run([sys.executable, "-c", step["python"]], cwd=repo, env=env, capture_output=True,
                               text=True, timeout=300)
            what, want = "the README's Python block " + step["python"].strip().splitlines()[-1][:60], 0
        else:
            command, why = prepared(step["command"])
            if command is None:
                skipped.append((step["command"], why))
                continue
            r = subprocess.run(["bash", "-c", "set -o pipefail; " + command], cwd=repo, env=env,
                               capture_output=True, text=True, timeout=300)
            what = command
            want = next((code for p, code in EXIT_CODES.items() if re.search(p, command)), 0)
        times.append((time.monotonic() - start, what))
        assert r.returncode == want, f"{what}\nexit {r.returncode}, README expects {want}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr, f"{what}\n{r.stderr}"
        if want != 0:  # an error example: exactly the lines shown
            assert (r.stdout + r.stderr).splitlines() == step["shown"], what
        ran.append(what)
    assert len(ran) >= 15 and {why for _, why in skipped} <= set(SKIP.values())
    print("\n".join(f"{t:6.1f}s  {w[:100]}" for t, w in times))
