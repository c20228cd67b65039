"""HParams as TensorBoard shows it, checked through TensorBoard's own HTTP API: two sweeps
trained into one log folder (and a plain run beside them), `tensorboard --logdir` on a free
port, then /data/plugin/hparams/experiment and /session_groups. Every trial shows its own
settings, and its metrics equal results.csv (train/loss: the last epoch's mean, as there)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import netspec

SWEEP = """
name: {name}
seed: 0
data: {{source: {{synthetic_classification: {{samples: 160, classes: 3}}}}, validation_split: 0.25}}
model: {{input_shape: [4], layers: [{{linear: 8}}, relu, {{linear: 3}}]}}
loss: cross_entropy
optimizer: {{{opt}: {{lr: 0.05}}}}
train: {{epochs: 2, batch_size: 16, metrics: [accuracy], log_every: 4, threads: 1, tensorboard: {{graph: false}}}}
sweep:
  grid:
{grid}
"""
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


class TensorBoard:
    """`tensorboard --logdir DIR --port 0` in a subprocess (the port it picked is read from
    its output); post() calls its HTTP API as the HParams dashboard does."""

    def __init__(self, logdir: Path):
        exe = Path(sys.executable).parent / "tensorboard"
        self.proc = subprocess.Popen([str(exe), "--logdir", str(logdir), "--port", "0", "--host", "127.0.0.1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url, seen, deadline = None, [], time.monotonic() + 120
        while self.url is None:
            line = self.proc.stdout.readline()
            seen.append(line)
            m = re.search(r"(http://\S+?/)", line)
            if m:
                self.url = m.group(1)
            elif (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                self.close()
                raise AssertionError("tensorboard did not start:\n" + "".join(seen))

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for name, opt, grid in (("sweep-sgd", "sgd", {"optimizer.sgd.lr": [0.1, 0.01]}),
                            ("sweep-adam", "adam", {"model.layers.0.linear": [4, 16], "train.batch_size": [8]})):
        text = SWEEP.format(name=name, opt=opt, grid="\n".join(f"    {k}: {v}" for k, v in grid.items()))
        result = netspec.train(netspec.load(text), out=out, workers=2, progress=False)
        assert not result.failed
    plain = netspec.load(SWEEP.format(name="plain", opt="sgd", grid="").split("sweep:")[0])
    netspec.train(plain, out=out, progress=False)  # a run without HParams beside the sweeps
    return out


def test_every_trial_shows_its_own_settings_and_its_results_csv_metrics(logdir):
    rows = {f"{sweep.name}/{r['trial']}": r for sweep in logdir.iterdir() if (sweep / "results.csv").exists()
            for r in csv.DictReader((sweep / "results.csv").open())}
    assert len(rows) == 4
    tb = TensorBoard(logdir)
    try:
        deadline = time.monotonic() + 90
        while True:  # TensorBoard loads the event files in the background
            exp = tb.post("data/plugin/hparams/experiment", {"experimentName": ""})
            cols = [{"hparam": h["name"], "includeInResult": True} for h in exp.get("hparamInfos", [])]
            cols += [{"metric": m["name"], "includeInResult": True} for m in exp.get("metricInfos", [])]
            groups = tb.post("data/plugin/hparams/session_groups",
                             {"experimentName": "", "allowedStatuses": STATUSES, "colParams": cols,
                              "startIndex": 0, "sliceSize": 100}).get("sessionGroups", [])
            if len(groups) == 4 and all(len(g.get("metricValues", [])) >= 4 for g in groups) or \
                    time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        tb.close()
    # the columns: both sweeps' settings
    assert {h["name"] for h in exp["hparamInfos"]} == {"optimizer.sgd.lr", "model.layers.0.linear",
                                                       "train.batch_size"}
    assert {g["name"] for g in groups} == set(rows)  # one row per trial; the plain run has none
    for g in groups:
        row = rows[g["name"]]
        own = {k for k in row if "." in k and "/" not in k}  # the row's parameter columns
        assert set(g["hparams"]) == own, g["name"]  # its own settings, each filled in
        for k in own:
            assert g["hparams"][k] == pytest.approx(float(row[k]))
        (session,) = g["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        shown = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        for tag in ("train/loss", "train/accuracy", "val/loss", "val/accuracy"):
            assert shown[tag] == pytest.approx(float(row[tag]), rel=1e-6), (g["name"], tag)
