"""`netspec export RUN`: a trained run as files that work without netspec.

    onnx         RUN/<name>.onnx (seq2seq: <name>.encoder.onnx + <name>.decoder.onnx) and
                 <name>.json beside it (classes, vocabularies, special tokens, shapes)
    torchscript  the same graphs, traced: <name>.torchscript.pt (seq2seq: two files)
    safetensors  RUN/<name>.safetensors: the state dict of netspec.build(spec), plus the
                 data info as JSON metadata; load_state_dict restores it, nothing unpickled

The graphs are the ones `Run.predict/sample/translate` use (graphs.py), so an exported
file computes what `netspec predict` reports. After writing, ONNX files are checked with
onnx.checker and, with onnxruntime installed, run against torch on a batch.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import Problem, RunError, SpecError
from . import graphs as G
from .run import Run, load_run
from .unroll import unrolled

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
TOLERANCE = 1e-3  # an exported graph further than this from torch on the check batch is an error
SPECIALS = {"<PAD>": 0, "<GO>": 1, "<EOS>": 2, "<UNK>": 3}


class Part:
    """One graph to write: its module, example inputs, names, and which dims are the batch."""

    def __init__(self, suffix, module, example: tuple, inputs, outputs, batch_dims, time_dims=None,
                 reference=None):
        self.suffix, self.module, self.example = suffix, module.eval(), example
        self.reference = (reference or module).eval()  # what the check compares with: netspec's own path
        self.inputs, self.outputs, self.batch_dims = inputs, outputs, batch_dims
        self.time_dims = time_dims or {}


def _needs_unroll(model) -> bool:
    return any(getattr(m, "pad_index", None) is not None for m in model.modules())


def _rng_ids(n, T, vocab_size, gen, low=1, pad=False):
    """Token ids [n, T]; padded rows (id 0 after a random length) when `pad`."""
    ids = torch.randint(low, vocab_size, (n, T), generator=gen)
    if pad:
        lengths = torch.randint(1, T + 1, (n,), generator=gen)
        lengths[0] = T
        ids[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids


def parts(run: Run, n: int = 8) -> list[Part]:
    """The graphs of a run, each with an example batch of n (also the check batch)."""
    gen = torch.Generator().manual_seed(0)
    spec, info = run.spec, run.info
    if run.language_model:
        ids = _rng_ids(n, min(20, spec.model.input_shape[0]), len(run.vocab), gen, low=0)
        return [Part("", G.NextToken(run.model), (ids,), ["ids"], ["probabilities", "logits"],
                     {"ids": 0}, {"ids": 1})]
    if run.kind == "network":
        shape = tuple(spec.model.input_shape)
        if run.text_input:
            x = _rng_ids(n, shape[0], len(run.vocab), gen, low=2, pad=True)
            model = unrolled(run.model) if _needs_unroll(run.model) else run.model
            name = "ids"
        else:
            lo, hi = run.value_range() or (0.0, 1.0)
            x = lo + torch.rand((n, *shape), generator=gen) * (hi - lo)
            model, name = run.model, "x"
        what = G.head_of(spec, run.task)
        return [Part("", G.Predictor(model, info.get("stats"), what[1]), (x,), [name], [what[0]], {name: 0},
                     reference=G.Predictor(run.model, info.get("stats"), what[1]))]
    if run.kind == "gan":
        z = run.model.noise(n, gen)
        if spec.gan.conditional:
            y = torch.arange(n) % spec.gan.classes
            return [Part("", G.Sampler(run.model, run.scale), (z, y), ["z", "labels"], ["samples"],
                         {"z": 0, "labels": 0})]
        return [Part("", G.Sampler(run.model, run.scale), (z,), ["z"], ["samples"], {"z": 0})]
    # seq2seq: the encoder (unrolled: padding is masked, not packed) and one decoder step
    enc = G.Encoder(unrolled(run.model["encoder"]), run.model["decoder"])
    src = _rng_ids(n, spec.encoder.max_length, len(info["source_vocab"]), gen, low=3, pad=True)
    with torch.no_grad():
        memory = enc(src)
    keys, mask, *state = memory
    encoder = Part(".encoder", enc, (src,), ["src"], ["keys", "mask", *["h", "c"][:len(state)]], {"src": 0},
                   reference=G.Encoder(run.model["encoder"], run.model["decoder"]))
    if not G.recurrent(run.model["decoder"]):  # a transformer: the prefix so far, dynamic in length
        prefix = torch.cat([torch.full((n, 1), SPECIALS["<GO>"]),
                            _rng_ids(n, 3, len(info["target_vocab"]), gen, low=3)], 1)
        return [encoder, Part(".decoder", G.PrefixStep(run.model["decoder"]), (prefix, keys, mask),
                              ["prefix", "keys", "mask"], ["log_probabilities"],
                              {"prefix": 0, "keys": 0, "mask": 0}, {"prefix": 1})]
    tokens = torch.full((n,), SPECIALS["<GO>"], dtype=torch.long)
    names = ["h", "c"][:len(state)]
    step = G.DecoderStep(run.model["decoder"])
    return [encoder,
            Part(".decoder", step, (tokens, keys, mask, *state), ["tokens", "keys", "mask", *names],
                 ["log_probabilities", *(f"next_{k}" for k in names)],
                 {"tokens": 0, "keys": 0, "mask": 0, **{k: 1 for k in names}})]


def sidecar(run: Run, files: dict[str, str]) -> dict:
    """What a deployment needs beside the graphs (written as <name>.json)."""
    spec, info = run.spec, run.info
    out = {"netspec": 1, "name": spec.name, "kind": spec.kind, "checkpoint": run.checkpoint, "files": files}
    if run.language_model:
        out.update(task="language_model", vocab=run.vocab, window=spec.model.input_shape[0],
                   tokenizer=spec.data.source.tokenizer, lowercase=spec.data.source.lowercase)
    elif run.kind == "network":
        out.update(task=run.task, input_shape=list(spec.model.input_shape), output=G.head_of(spec, run.task)[0],
                   classes=run.classes)
        if run.text_input:
            src = spec.data.source
            out.update(vocab=run.vocab, pad_id=0, unknown_id=run.vocab.index("<UNK>") if "<UNK>" in run.vocab
                       else None, tokenizer=src.tokenizer, lowercase=src.lowercase)
        elif run.value_range():
            out["input_range"] = list(run.value_range())
    elif run.kind == "gan":
        out.update(latent_size=spec.latent.size, latent_distribution=spec.latent.distribution,
                   conditional=spec.gan.conditional, classes=run.classes,
                   sample_shape=list(info["shape"]), data_range=[run.scale.low, run.scale.high])
    else:
        from ..kinds.seq2seq import _tokenizer
        tok, lower = _tokenizer(spec)
        out.update(source_vocab=info["source_vocab"], target_vocab=info["target_vocab"], special_ids=SPECIALS,
                   source_length=spec.encoder.max_length, max_length=spec.decoder.max_length,
                   tokenizer=tok, lowercase=lower, search=spec.decoder.search.type,
                   decoder_input="state" if G.recurrent(run.model["decoder"]) else "prefix")
    if out.get("tokenizer") == "word":
        from ..data.text import _WORD
        out["token_pattern"] = _WORD.pattern  # re.findall(pattern, text) splits a text as netspec did
    return out


@contextlib.contextmanager
def _quiet():
    """torch's exporters log and warn a lot about their own internals: keep the user's screen for us."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx",
                                               "torch._export", "torch.utils._sympy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise RunError(f"export needs {module}: pip install 'netspec[export]' (onnx, onnxscript, "
                       "onnxruntime)") from None


def _onnx(part: Part, path: Path) -> None:
    _need("onnx")
    _need("onnxscript")
    from torch.export import Dim
    batch, time = Dim("batch"), Dim("time", max=4096)
    dynamic = []
    for name in part.inputs:
        dims = {}
        if name in part.batch_dims:
            dims[part.batch_dims[name]] = batch
        if name in part.time_dims:
            dims[part.time_dims[name]] = time
        dynamic.append(dims or None)
    try:
        with _quiet():
            if part.time_dims:
                # torch.export decomposes an LSTM step by step, fixing the time dimension; the
                # TorchScript-based exporter writes ONNX's own LSTM, dynamic in time
                axes = {n: {**{d: "batch" for d in [part.batch_dims.get(n)] if d is not None},
                            **{d: "time" for d in [part.time_dims.get(n)] if d is not None}} for n in part.inputs}
                torch.onnx.export(part.module, part.example, str(path), input_names=part.inputs,
                                  output_names=part.outputs, dynamic_axes=axes, dynamo=False)
            else:
                torch.onnx.export(part.module, part.example, str(path), input_names=part.inputs,
                                  output_names=part.outputs, dynamic_shapes=tuple(dynamic), dynamo=True,
                                  external_data=False, verbose=False)
    except Exception as e:  # the exporter's own errors are many and change between versions
        raise RunError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    _check_dynamic(part, path)


def _check_dynamic(part: Part, path: Path) -> None:
    """The dims promised dynamic (batch, time) must be symbolic in the written graph."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        for d in (part.batch_dims.get(inp.name), part.time_dims.get(inp.name)):
            if d is not None and not dims[d].dim_param:
                raise RunError(f"ONNX export fixed dimension {d} of input '{inp.name}' at {dims[d].dim_value}; "
                               "it should be dynamic (please report this as a bug)")


def _torch_outputs(part: Part) -> list[np.ndarray]:
    with torch.no_grad():
        out = part.reference(*part.example)
    out = out if isinstance(out, tuple) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def _largest_difference(got: list, want: list) -> float:
    """Largest absolute difference; infinities (log-probabilities of tokens never output) must match."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g.shape != w.shape:
            return float("inf")
        finite = np.isfinite(w)
        if (np.isfinite(g) != finite).any() or (g[~finite] != w[~finite]).any():
            return float("inf")
        if finite.any():
            worst = max(worst, float(np.abs(g[finite] - w[finite]).max()))
    return worst


def check_onnx(part: Part, path: Path) -> float | None:
    """onnx.checker, then onnxruntime against torch on the example batch (None: no onnxruntime)."""
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise RunError(f"{path}: the written ONNX model does not pass onnx.checker: {str(e)[:300]}") from None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: t.numpy() for n, t in zip(part.inputs, part.example)}
    return _largest_difference(sess.run(part.outputs, feeds), _torch_outputs(part))


def _torchscript(part: Part, path: Path) -> float:
    with _quiet():
        traced = torch.jit.trace(part.module, part.example, check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        out = loaded(*part.example)
    out = out if isinstance(out, tuple) else (out,)
    return _largest_difference([o.numpy() for o in out], _torch_outputs(part))


def state_dict(run: Run) -> dict[str, torch.Tensor]:
    """The weights keyed as netspec.build(spec) names them."""
    if run.kind == "gan":
        sd = {f"generator.{k}": v for k, v in run.model.generator.state_dict().items()}
        sd.update({f"discriminator.{k}": v for k, v in run.model.discriminator.state_dict().items()})
    else:
        sd = run.model.state_dict()
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _safetensors(run: Run, path: Path) -> int:
    try:
        from safetensors.torch import load_file, save_file
    except ImportError:
        raise RunError("--format safetensors needs safetensors: pip install safetensors") from None
    sd = state_dict(run)
    meta = {"netspec": json.dumps({"kind": run.kind, "checkpoint": run.checkpoint, "spec": "spec.yaml",
                                   "data": _jsonable(run.info)})}
    save_file(sd, str(path), metadata=meta)
    back = load_file(str(path))
    if set(back) != set(sd) or any(not torch.equal(back[k], sd[k]) for k in sd):
        raise RunError(f"{path}: the written weights do not read back identically")
    return len(sd)


def _output(run: Run, fmt: str, output) -> Path:
    path = Path(output) if output else run.folder / f"{run.spec.name}{FORMATS[fmt]}"
    if path.is_dir():
        raise SpecError([Problem("-o", f"{path} is a folder; name the file to write, e.g. "
                                       f"{path / (run.spec.name + FORMATS[fmt])}", "netspec export")])
    if not path.parent.is_dir():
        raise SpecError([Problem("-o", f"the folder {path.parent} does not exist; create it or pick another "
                                       "path", "netspec export")])
    return path


def _stem(path: Path, fmt: str) -> tuple[str, str]:
    """('model', '.onnx') for model.onnx; other names keep their own extension."""
    ext = FORMATS[fmt]
    return (path.name[:-len(ext)], ext) if path.name.endswith(ext) else (path.stem, path.suffix)


def export(run_dir, fmt: str = "onnx", output=None, checkpoint: str = "best", say=print) -> list[Path]:
    """Write the run in `fmt`; returns the files written. `say` gets one line per file."""
    if fmt not in FORMATS:
        raise SpecError([Problem("--format", f"'{fmt}': use {', '.join(FORMATS)}", "netspec export")])
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir, checkpoint)
    if run.device.type != "cpu":
        run.model.cpu()
    path = _output(run, fmt, output)
    if fmt == "safetensors":
        n = _safetensors(run, path)
        say(f"wrote {path} ({n} tensors; netspec.build(spec) + load_state_dict restores it; read back identical)")
        return [path]
    written = []
    stem, ext = _stem(path, fmt)
    parts_ = parts(run)
    for part in parts_:
        target = path.with_name(stem + part.suffix + ext)
        if fmt == "onnx":
            _onnx(part, target)
            diff = check_onnx(part, target)
            check = ("onnx.checker passed; onnxruntime not installed, not compared" if diff is None else
                     f"onnx.checker passed; onnxruntime vs torch on a batch of {len(part.example[0])}: "
                     f"largest difference {diff:.2e}")
        else:
            diff = _torchscript(part, target)
            check = f"reloaded vs torch on a batch of {len(part.example[0])}: largest difference {diff:.2e}"
        say(f"wrote {target} ({check})")
        if diff is not None and not diff <= TOLERANCE:
            raise RunError(f"{target} computes something else than netspec (largest difference {diff:.2e} "
                           f"on a batch; more than {TOLERANCE}): please report this as a bug")
        written.append(target)
    files = {(part.suffix.strip(".") or "model"): p.name for part, p in zip(parts_, written)}
    meta = path.with_name(stem + ".json")
    meta.write_text(json.dumps(sidecar(run, files), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"wrote {meta} (what a deployment needs beside the graph: classes, vocabularies, shapes)")
    return [*written, meta]
