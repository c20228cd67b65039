"""Data-parallel training of one run: `netspec train SPEC --nproc N`, or any launcher that
sets torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

Every process builds the same seeded network; DistributedDataParallel averages the
gradients (gloo on CPU, nccl on GPUs). train.batch_size stays the global batch: each of the
N processes takes every N-th sample of it, so a run means the same with any N. Rank 0 alone
writes the run folder (TensorBoard, checkpoints, metrics.json).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from ..errors import Problem, RunError, SpecError


def rank_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started as one of several processes, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or "RANK" not in os.environ:
            return None
        rank = int(os.environ["RANK"])
        return rank, world, int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise SpecError([Problem("", "RANK, WORLD_SIZE and LOCAL_RANK must be integers "
                                     f"(got RANK={os.environ.get('RANK')!r}, "
                                     f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r})", "environment")]) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def launch(spec_file, overrides=(), out="runs", nproc: int = 2, resume: bool = False,
           overwrite: bool = False, quiet: bool = False) -> None:
    """Start `nproc` ranks of `netspec train` on this machine (as torchrun would) and wait.
    The first rank to fail stops the others: they would wait forever on its gradients."""
    from .runs import own_run
    from ..spec import load
    with own_run(load(spec_file, list(overrides)), out, resume=resume, overwrite=overwrite) as owned:
        resume = owned.resume  # refused before starting N (rank 0 takes the folder again)
    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    threads = str(max(1, _cores() // nproc))
    env.setdefault("NETSPEC_THREADS", threads)
    env.setdefault("OMP_NUM_THREADS", threads)
    cmd = [sys.executable, "-m", "netspec.cli", "train", str(spec_file), "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    cmd += ["--resume"] if resume else ["--overwrite"] if overwrite else []
    procs = []
    try:
        for r in range(nproc):
            procs.append(subprocess.Popen(cmd + ([] if r == 0 and not quiet else ["--quiet"]),
                                          env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}))
        failed = None
        while failed is None and any(p.poll() is None for p in procs):
            failed = next((r for r, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            time.sleep(0.1)
        failed = next((r for r, p in enumerate(procs) if p.poll() not in (None, 0)), failed)
    except KeyboardInterrupt:
        _stop(procs, signal.SIGINT)
        raise
    if failed is not None:
        _stop(procs, signal.SIGTERM)
        code = procs[failed].returncode
        if code == 2:  # a spec problem: every rank printed it; exit as a spec error would
            sys.exit(2)
        raise RunError(f"rank {failed} of {nproc} failed (exit code {code}); the other ranks were stopped")


def _stop(procs, sig) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_rank(spec, out="runs", resume: bool = False, overwrite: bool = False, progress: bool = True,
             report: bool | None = None):
    """This process's share of a data-parallel run (the environment names its rank)."""
    import torch
    import torch.distributed as dist

    from .loop import fit
    from .runs import RunResult, own_run
    rank, world, local = rank_env()
    gpu = torch.cuda.is_available() and spec.train.device in ("auto", "cuda")
    if gpu:
        torch.cuda.set_device(local % torch.cuda.device_count())
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise SpecError([Problem("", f"RANK and WORLD_SIZE are set but {var} is not: start the ranks "
                                         "with torchrun, or use 'netspec train SPEC --nproc N'", "environment")])
    dist.init_process_group("nccl" if gpu else "gloo", rank=rank, world_size=world)
    try:
        with ExitStack() as owned:
            # rank 0 owns the run folder (locked for the run's life, checked, spec.yaml written)
            # and alone writes it; the others learn whether taking it worked
            folder, problem = Path(out) / spec.name, [None, resume]
            if rank == 0:
                try:
                    problem[1] = owned.enter_context(own_run(spec, out, resume=resume, overwrite=overwrite)).resume
                except SpecError as e:
                    problem[0] = e.problems
            dist.broadcast_object_list(problem, src=0)
            if problem[0] is not None:
                raise SpecError(problem[0] if rank == 0 else [])
            resume = problem[1]
            try:
                metrics = fit(spec, folder, resume=resume, progress=progress and rank == 0, dist=(rank, world),
                              report=report and rank == 0)
            except RuntimeError as e:  # mostly a collective that lost another rank (it died or was stopped)
                raise RunError(f"rank {rank} of {world} stopped: {str(e).strip().splitlines()[-1][:300]}") from e
        return RunResult(folder, metrics)
    finally:
        dist.destroy_process_group()
