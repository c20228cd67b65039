"""What the kind benches share: netspec and its hand-written twin run as whole processes,
alternating, and compared; and a profile of where netspec's time goes.

A bench script gives `main` two functions `(overrides, out) -> dict`: netspec's way (through
`run_netspec`: public API only) and a twin (a hand-written PyTorch loop). Each returns a dict
with "seconds" (from reading the spec to the end of training, imports excluded) and
"check" (a number both should produce when their arithmetic is the same). `main()` parses
--epochs/--reps/--threads/--profile and runs either the comparison or the profile.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("netspec", "twin")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_netspec(spec_path, overrides, out, check_key: str) -> dict:
    import netspec
    t0 = time.perf_counter()
    spec = netspec.load(spec_path, overrides)
    result = netspec.train(spec, out=out, progress=False, overwrite=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": result.metrics.get(check_key), "folder": str(result.folder),
            "dynamo": "torch._dynamo" in sys.modules}


# --- one way in a child process ---
def _child(script: str, way: str, epochs: int, threads: int, out: Path, env: dict, importtime=False,
           profile: Path | None = None) -> tuple[dict, str]:
    cmd = [sys.executable] + (["-X", "importtime"] if importtime else []) + [
        script, "--child", way, "--epochs", str(epochs), "--threads", str(threads), "--out", str(out)]
    if profile is not None:
        cmd += ["--profile-to", str(profile)]
    # output to files, not pipes: wait4 (for the child's rusage) reads nothing while it waits,
    # so a full pipe would block the child
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, cwd=ROOT, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        stdout, stderr = fo.read(), fe.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{way} failed ({os.waitstatus_to_exitcode(status)}):\n{stderr[-3000:]}")
    r = json.loads(stdout.strip().splitlines()[-1])
    r.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)
    return r, stderr


def compare(title: str, script: str, epochs: int, reps: int, threads: int, warmup: bool, note: str) -> None:
    print(f"{title}, {epochs} epochs, {reps} alternating repetitions, threads "
          f"{threads or 'as the spec says'}, {os.cpu_count()} cores, load {loadavg()} before", flush=True)
    res: dict[str, list[dict]] = {w: [] for w in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        # one cache for the whole bench: a cache netspec fills on the first run (the warm-up) is
        # what a user has from their second run on
        env = {**os.environ, "NETSPEC_CACHE": str(Path(tmp) / "cache"), "PYTHONPATH": str(ROOT)}
        for w in WAYS if warmup else ():  # warm-up (file caches, netspec's user cache), dropped
            _child(script, w, 1, threads, Path(tmp) / w, env)
        for rep in range(reps):
            for w in (WAYS if rep % 2 == 0 else WAYS[::-1]):  # alternate which goes first
                r, _ = _child(script, w, epochs, threads, Path(tmp) / w, env)
                res[w].append(r)
                print(f"  rep {rep + 1} {w:<8} wall {r['wall']:6.2f}s  cpu {r['cpu']:6.2f}s  in-process "
                      f"{r['seconds']:6.2f}s (cpu {r['cpu_work']:6.2f}s)  peak RSS {r['rss_mb']:5.0f} MB  "
                      f"check {r['check']:.6f}", flush=True)
    print(f"load {loadavg()} after")
    n, t = res["netspec"], res["twin"]
    print(f"\n  {'':<7} {'netspec wall':>12} {'twin wall':>10} {'ratio':>6}   {'netspec in-proc':>15} "
          f"{'twin in-proc':>12} {'ratio':>6}")
    for f in (min, statistics.median):
        a, b = f(r["wall"] for r in n), f(r["wall"] for r in t)
        c, d = f(r["seconds"] for r in n), f(r["seconds"] for r in t)
        print(f"  {f.__name__:<7} {a:11.2f}s {b:9.2f}s {a / b:6.3f}   {c:14.2f}s {d:11.2f}s {c / d:6.3f}")
    for k, what in (("cpu", "the whole process"), ("cpu_work", "from reading the spec to the end")):
        a, b = statistics.median(r[k] for r in n), statistics.median(r[k] for r in t)
        print(f"  median cpu (user + sys) of {what}: netspec {a:.2f}s  twin {b:.2f}s  ratio {a / b:.3f}")
    print("  (cpu is the steadier figure on a shared machine: a busy one stretches wall times)")
    same = n[-1]["check"] == t[-1]["check"]
    print(f"  same arithmetic: {'yes' if same else 'NO'} (last epoch's training loss: netspec "
          f"{n[-1]['check']:.6f}, twin {t[-1]['check']:.6f}){'' if same else note}")
    if n[-1].get("dynamo"):
        print("  netspec's process imported torch._dynamo")


# --- where netspec's time goes ---
# (label, regex on "path:function" of a function in the profile); a function counts once per
# row, through the callers that are not themselves in that row (no double counting of nesting)
ROWS = [
    ("quality classifier (GAN)", r"netspec/.*:(\w*quality\w*|\w*judge\w*|_is_score)$"),
    ("sample images: grid + PNG", r"netspec/.*:(\w*grid\w*|\w*png\w*|\w*image\w*)$|PIL/PngImagePlugin.py:_save$"),
    ("checkpoints", r"netspec/.*:\w*checkpoint\w*$|torch/serialization.py:save$"),
    ("TensorBoard", r"torch/utils/tensorboard/writer.py:(add_\w+|flush|close|__init__)$"),
    ("decoding (greedy/beam)", r"netspec/.*:(\w*decode\w*|greedy|beam_search)$"),
    ("evaluation passes (incl. decoding)", r"netspec/.*:(measure|evaluate\w*|validate\w*|\w*eval_\w*)$"),
    ("BLEU", r"netspec/.*:\w*bleu\w*$|sacrebleu/.*:corpus_score$"),
    ("data loading", r"netspec/data/.*:(load|read_pairs)$"),
    ("building the networks", r"netspec/.*:(compile_spec|materialize|build)$"),
    ("module forward calls (all)", r"torch/nn/modules/module.py:(_wrapped_call_impl|_call_impl)$"),
    ("optimizer steps", r"torch/optim/.*:step$"),
    ("backward passes", r"torch/_tensor.py:backward$"),
]


def _profile_rows(stats, epochs: int, total: float) -> None:
    table = stats.stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)

    def key(f):
        return f"{f[0]}:{f[2]}"
    print(f"\n  {'where':<36} {'s total':>8} {'ms/epoch':>9} {'share':>6}")
    for label, pattern in ROWS:
        rx = re.compile(pattern)
        hit = {f for f in table if rx.search(key(f))}
        t = 0.0
        for f in hit:
            for caller, edge in table[f][4].items():
                if caller not in hit:
                    t += edge[3]
        print(f"  {label:<36} {t:8.2f} {t / epochs * 1000:9.1f} {t / total:6.1%}")


def _imports(stderr: str) -> dict[str, int]:
    """Module -> its own import time (us), from -X importtime, for modules imported after torch
    (both ways import torch before their clock starts)."""
    out, after = {}, False
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", line)
        if m and after:
            out[m.group(4)] = int(m.group(1))
        elif m and m.group(4) == "torch" and len(m.group(3)) <= 1:
            after = True
    return out


def profile(title: str, script: str, epochs: int, threads: int) -> None:
    """netspec once under cProfile in a fresh process; the imports of both ways (-X importtime)."""
    import pstats
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NETSPEC_CACHE": str(Path(tmp) / "cache"), "PYTHONPATH": str(ROOT)}
        # 1-epoch runs of both for their imports (the netspec one also fills its user cache)
        imports = {w: _imports(_child(script, w, 1, threads, Path(tmp) / w, env, importtime=True)[1])
                   for w in WAYS}
        prof = Path(tmp) / "netspec.prof"
        r, _ = _child(script, "netspec", epochs, threads, Path(tmp) / "run", env, profile=prof)
        stats = pstats.Stats(str(prof))
    print(f"{title}: netspec profiled, {epochs} epochs, load {loadavg()}")
    total = stats.total_tt
    print(f"  {total:.2f}s profiled (netspec.load + netspec.train; cProfile slows per-call Python code), "
          f"{total / epochs * 1000:.0f} ms per epoch")
    _profile_rows(stats, epochs, total)
    mine, twin = imports["netspec"], imports["twin"]
    extra = {k: v for k, v in mine.items() if k not in twin}
    print(f"\n  imports after torch (-X importtime, 1-epoch runs): netspec {sum(mine.values()) / 1e6:.2f}s, twin "
          f"{sum(twin.values()) / 1e6:.2f}s; only netspec's: {sum(extra.values()) / 1e6:.2f}s in {len(extra)} modules"
          f"; torch._dynamo imported by netspec {'torch._dynamo' in mine}, by the twin {'torch._dynamo' in twin}")
    top: dict[str, int] = {}
    for k, v in extra.items():  # by top package
        top[k.split(".")[0]] = top.get(k.split(".")[0], 0) + v
    print("    only netspec's, by package: " + ", ".join(f"{k} {v / 1e6:.2f}s" for k, v in
                                                    sorted(top.items(), key=lambda kv: -kv[1])[:8]))
    print("\n  netspec functions by cumulative time (top 20):")
    ns = [(v[3], v[2], f) for f, v in stats.stats.items() if "netspec/" in f[0]]
    for ct, tt, f in sorted(ns, reverse=True)[:20]:
        print(f"    {ct:7.2f}s cum {tt:6.2f}s own  {Path(f[0]).parent.name}/{Path(f[0]).name}:{f[1]} {f[2]}")
    print("\n  functions by own time (top 15):")
    own = sorted(((v[2], v[1], f) for f, v in stats.stats.items()), reverse=True)[:15]
    for tt, calls, f in own:
        print(f"    {tt:7.2f}s own {calls:8d} calls  {f[0][-60:]}:{f[1]} {f[2]}")


def main(title: str, script: str, ways: dict, default_epochs: int, default_reps: int, doc: str,
         warmup: bool = True, note: str = "") -> None:
    """`warmup`: run each way once (1 epoch, dropped) first; `note`: why the arithmetic may differ."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=default_epochs)
    ap.add_argument("--reps", type=int, default=default_reps)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (default: the spec's train.threads)")
    ap.add_argument("--profile", action="store_true", help="instead: where netspec's time goes (cProfile, importtime)")
    ap.add_argument("--child", choices=list(ways), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        import torch  # both ways pay for torch before their clock starts
        if a.threads:
            torch.set_num_threads(a.threads)
        overrides = [f"train.epochs={a.epochs}"] + ([f"train.threads={a.threads}"] if a.threads else [])
        fn = ways[a.child]
        cpu = time.process_time()  # every thread's (netspec writes checkpoints and events off the main one)
        if a.profile_to:
            import cProfile
            prof = cProfile.Profile()
            r = prof.runcall(fn, overrides, Path(a.out))
            prof.dump_stats(a.profile_to)
        else:
            r = fn(overrides, Path(a.out))
        r["cpu_work"] = time.process_time() - cpu
        print(json.dumps(r))
        return
    if a.profile:
        return profile(title, script, a.epochs, a.threads)
    compare(title, script, a.epochs, a.reps, a.threads, warmup, note)
