"""Batch-1 latency of an exported network: onnxruntime vs torch eager (the same graph that
`netspec predict` runs, normalisation and softmax included).

    python bench/export_latency.py                  # trains digits_cnn briefly into a temp folder
    python bench/export_latency.py --run runs/digits-cnn --threads 1 --repeat 2000

Both run one sample at a time on the same thread count; the figure is the median over
`--repeat` calls after a warm-up, in alternating rounds so machine load hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run folder (default: train specs/digits_cnn.yaml for 3 epochs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    import netspec
    from netspec.infer.export import export

    tmp = Path(tempfile.mkdtemp(prefix="netspec-bench-"))
    run_dir = args.run
    if run_dir is None:
        spec = netspec.load(ROOT / "specs" / "digits_cnn.yaml", ["train.epochs=3"])
        run_dir = netspec.train(spec, out=tmp / "runs", progress=False).folder
    run = netspec.load_run(run_dir)
    onnx_file = export(run, "onnx", tmp / "model.onnx", say=print)[0]

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    sess = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    graph = run.graph().eval()
    x = np.random.default_rng(0).random((1, *run.spec.model.input_shape), dtype=np.float32)
    xt = torch.from_numpy(x)
    name = sess.get_inputs()[0].name

    def torch_call():
        with torch.inference_mode():
            graph(xt)

    def ort_call():
        sess.run(None, {name: x})

    def timed(fn) -> list[float]:
        out = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    for fn in (torch_call, ort_call):  # warm-up
        for _ in range(200):
            fn()
    t_torch, t_ort = [], []
    for _ in range(args.rounds):
        t_torch += timed(torch_call)
        t_ort += timed(ort_call)
    mt, mo = statistics.median(t_torch) * 1e6, statistics.median(t_ort) * 1e6
    print(f"{run.spec.name}, batch 1, {args.threads} thread(s), median of {len(t_torch)} calls:")
    print(f"  torch eager   {mt:8.1f} us")
    print(f"  onnxruntime   {mo:8.1f} us")
    print(f"  onnxruntime is {mt / mo:.2f}x faster (torch / onnxruntime)")


if __name__ == "__main__":
    main()
