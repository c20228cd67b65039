"""A finished run, loaded for use: `netspec.load_run(folder)`.

    run = netspec.load_run("runs/digits-cnn")          # best checkpoint, on the CPU
    p = run.predict("digit.png")                        # or an array, a .npz/.npy/.csv, a folder
    p.labels, p.outputs                                 # classes as the data names them; probabilities

The run's own preprocessing comes from its checkpoint: normalisation statistics, class
names, vocabularies, a GAN's data range. Nothing is unpickled (weights_only loading).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..engine.runs import checkpoint_path, load_checkpoint, open_run
from ..errors import Problem, RunError, SpecError, arg
from . import graphs as G
from . import inputs as I


def label(name):
    """A class name as the data wrote it: '3' is the integer 3, 'cat' stays 'cat'."""
    if isinstance(name, str) and name.lstrip("-").isdigit() and str(int(name)) == name:
        return int(name)
    return name


@dataclass
class Prediction:
    """What a network said about N samples."""
    what: str                      # "probabilities", "scores" or "value"
    outputs: np.ndarray            # [N, ...]: what `what` says
    labels: list | None = None     # a classifier's (or language model's next-token) answer per sample
    files: list[str] | None = None  # the image files, when the inputs were images

    def __len__(self):
        return len(self.outputs)

    def rows(self) -> list[dict]:
        """One JSON-able dict per sample, as `netspec predict` prints them."""
        rows = []
        for i, o in enumerate(self.outputs):
            r = {"file": self.files[i]} if self.files else {}
            if self.what == "value":
                r["value"] = [round(float(v), 6) for v in np.ravel(o)]
            else:
                r["class" if self.what != "next" else "next"] = self.labels[i]
                r[self.what if self.what != "next" else "probabilities"] = [round(float(v), 6) for v in o]
            rows.append(r)
        return rows

    def jsonl(self) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.rows())


class Run:
    """A trained run: its spec, its networks on a device, and what its checkpoint knows
    about the data. `predict` (networks), `sample` (GANs, language models), `translate`
    (seq2seq)."""

    def __init__(self, folder, spec, state: dict, device="cpu", checkpoint="best"):
        self.folder, self.spec, self.checkpoint = Path(folder), spec, checkpoint
        self.device = torch.device(device)
        self.kind = spec.kind
        if self.kind == "network":
            from ..kinds.network import restore
            self.model, self.info = restore(spec, state)
        elif self.kind == "gan":
            from ..kinds.gan import restore
            self.model, self.scale, self.info = restore(spec, state)
        else:
            from ..kinds.seq2seq import restore
            self.model, self.info = restore(spec, state)
        self.model.to(self.device).eval()
        self.task = self.info.get("task")
        self.classes = [label(c) for c in self.info["classes"]] if self.info.get("classes") else None
        self.vocab = self.info.get("vocab")
        self._range = False  # not looked up yet

    def __repr__(self):
        return f"<netspec run {self.spec.name!r} ({self.kind}, {self.checkpoint} checkpoint) on {self.device}>"

    # --- what each kind is used through (also what `netspec export` writes) ---
    @property
    def language_model(self) -> bool:
        return self.kind == "network" and self.task == "tokens"

    @property
    def text_input(self) -> bool:
        return self.kind == "network" and self.spec.model.input_dtype == "long"

    def graph(self) -> torch.nn.Module:
        if self.language_model:
            return G.NextToken(self.model)
        if self.kind == "network":
            return G.Predictor(self.model, self.info.get("stats"), G.head_of(self.spec, self.task)[1])
        if self.kind == "gan":
            return G.Sampler(self.model, self.scale)
        raise RunError("a seq2seq run is two graphs: Encoder and DecoderStep")

    # --- networks ---
    def value_range(self) -> tuple[float, float] | None:
        """The range of the training inputs (before normalisation), for the far-outside warning."""
        if self._range is False:
            self._range = self.info.get("range") or self._data_range()
        return tuple(self._range) if self._range else None

    def _data_range(self):
        if self.text_input or self.spec.data is None:
            return None
        from .. import data as D
        try:  # (checkpoints do not record it: read from the run's data, when it is still there)
            x = D.load(self.spec, stats=self.info.get("stats")).splits["train"][0]
        except (SpecError, RunError, OSError, ValueError):
            return None
        if not isinstance(x, torch.Tensor):  # memory-mapped data: too big to scan for a warning
            return None
        stats = self.info.get("stats")
        if stats:
            x = x * stats["scale"] + stats["shift"]
        return float(x.min()), float(x.max())

    def _samples(self, x) -> tuple[torch.Tensor, list[str] | None, str]:
        """Inputs (a path, an array or tensor, or texts) -> a checked batch, file names, a name for errors."""
        spec = self.spec
        if self.text_input:
            from ..data.text import read_lines
            if isinstance(x, (list, tuple)) and all(isinstance(t, str) for t in x):
                lines, where = list(x), "inputs"
            else:
                lines, where = read_lines(x), str(x if x not in (None, "-") else "<stdin>")
            if not lines:
                I.fail(where, "no lines to predict on (one text per line)")
            return (lines if self.language_model else self._encode_lines(lines, where)), None, where
        files, where = None, "inputs"
        if x is None or isinstance(x, (str, Path)):
            where = str(x) if x is not None else "netspec predict"
            x, files = I.read(x, spec, self.value_range())
        elif isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 0 or len(x) == 0:
            I.fail(where, f"no samples (shape {list(x.shape)}); give one row per sample")
        I.check_finite(x, where)
        x = I.fit_shape(x, tuple(spec.model.input_shape), where)
        if files is None:
            I.check_range(x, self.value_range(), where)
        return torch.from_numpy(np.ascontiguousarray(x)), files, where

    def _encode_lines(self, lines: list[str], where) -> torch.Tensor:
        """Texts -> token ids padded (id 0) to the model's length, with the run's vocabulary."""
        from ..data.text import encode, tokenize
        src = self.spec.data.source
        T = self.spec.model.input_shape[0]
        index = {t: i for i, t in enumerate(self.vocab)}
        seqs = [tokenize(line, src.tokenizer, src.lowercase) for line in lines]
        over = [i + 1 for i, s in enumerate(seqs) if len(s) > T]
        if over and src.too_long == "error":
            I.fail(where, f"{len(over)} input lines are longer than {T} tokens (the first: line {over[0]}); "
                          "the spec says too_long: error")
        if over:
            I.warn(f"{len(over)} input lines cut to {T} tokens")
        x = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            x[i, :min(len(s), T)] = torch.tensor(encode(s[:T], index), dtype=torch.long)
        return x

    @torch.no_grad()
    def predict(self, x) -> Prediction:
        """Predictions for samples: a file (.npz/.npy/.csv, PNG/JPEG) or folder of images, an
        array or tensor [N, ...] (flat rows are reshaped to the model's input), or texts
        (a sequence classifier; a language model: next-token probabilities after each text)."""
        if self.kind != "network":
            what = "translate" if self.kind == "seq2seq" else "sample"
            raise SpecError([Problem("kind", f"a {self.kind} run does not predict; use {what}()", str(self.folder))])
        batch, files, _ = self._samples(x)
        if self.language_model:
            return self._next_tokens(batch)
        graph = self.graph()
        out = torch.cat([graph(batch[i:i + 1024].to(self.device)) for i in range(0, len(batch), 1024)]).float().cpu()
        what, _ = G.head_of(self.spec, self.task)
        labels = None
        if what != "value":
            k = out.argmax(-1) if out.shape[-1] > 1 else (out[..., 0] > 0.5).long()
            labels = [self.classes[i] if self.classes else i for i in k.tolist()]
        return Prediction(what, out.numpy(), labels, files)

    def _next_tokens(self, lines: list[str]) -> Prediction:
        from ..data.text import tokenize
        src, window = self.spec.data.source, self.spec.model.input_shape[0]
        index = {t: i for i, t in enumerate(self.vocab)}
        graph, probs = G.NextToken(self.model), []
        for n, line in enumerate(lines, 1):
            toks = tokenize(line, src.tokenizer, src.lowercase)[-window:]
            unknown = sorted({t for t in toks if t not in index})
            if not toks or unknown:
                raise SpecError([Problem("inputs", f"line {n}: " + ("empty" if not toks else "tokens the model "
                                         f"never saw: {', '.join(map(repr, unknown[:10]))}"), "inputs")])
            ids = torch.tensor([[index[t] for t in toks]], device=self.device)
            probs.append(graph(ids)[0][0].float().cpu())
        out = torch.stack(probs)
        return Prediction("next", out.numpy(), [self.vocab[i] for i in out.argmax(-1).tolist()])

    # --- GANs and language models ---
    @torch.no_grad()
    def sample(self, n=None, temperature=1.0, label=None, seed=0, prime="", length=200):
        """A GAN: n samples [n, ...] in the data's range (label: the class of a conditional one;
        default every class in turn). A language model: n texts of `length` tokens after `prime`
        (temperature 0: always the most likely token)."""
        if self.language_model and temperature < 0:
            raise SpecError([Problem(arg("temperature"), f"temperature {temperature:g}: give 0 (always the most "
                                     "likely token) or more; the logits are divided by it", str(self.folder))])
        if self.kind == "gan" and temperature <= 0:
            raise SpecError([Problem(arg("temperature"), f"temperature {temperature:g}: give a value above 0; a "
                                     "GAN's temperature scales its noise" + (", and at 0 every sample would be "
                                     "the same" if temperature == 0 else ""), str(self.folder))])
        if self.language_model:
            from ..kinds.network import sample_texts
            if label is not None:
                raise RunError("label is for conditional GANs; a language model takes prime")
            return sample_texts(self.spec, self.model, self.vocab, n or 1, temperature, prime, length, seed)
        if self.kind != "gan":
            raise SpecError([Problem("kind", "sample() is for GANs and language models", str(self.folder))])
        if prime:
            raise SpecError([Problem("prime", "prime is for language models; a GAN starts from noise", str(self.folder))])
        g, n = self.spec.gan, n or 64
        if label is not None and not g.conditional:
            raise SpecError([Problem("label", "this GAN is not conditional (gan.conditional is false), so it "
                                              "cannot be asked for a class", str(self.folder))])
        if label is not None and not 0 <= label < g.classes:
            raise SpecError([Problem("label", f"label {label} is outside 0..{g.classes - 1}", str(self.folder))])
        z = self.model.noise(n, torch.Generator().manual_seed(seed)) * temperature
        y = None
        if g.conditional:
            y = torch.full((n,), label) if label is not None else torch.arange(n) % g.classes
        return self.graph()(z.to(self.device), y.to(self.device) if y is not None else None).cpu().numpy()

    # --- seq2seq ---
    @torch.no_grad()
    def translate(self, lines) -> list[str]:
        """One output text per input text (a list of strings, or a file of lines)."""
        from ..data import text as X
        from ..kinds.seq2seq import _tokenizer, decode_all, ids
        if self.kind != "seq2seq":
            raise SpecError([Problem("kind", "translate() is for seq2seq runs", str(self.folder))])
        if isinstance(lines, str):
            lines = [lines]
        elif isinstance(lines, Path):
            lines = X.read_lines(lines)
        spec = self.spec
        tokenizer, lowercase = _tokenizer(spec)
        seqs = [X.tokenize(line, tokenizer, lowercase) for line in lines]
        limit = spec.encoder.max_length
        over = [i + 1 for i, s in enumerate(seqs) if len(s) > limit]
        if over and spec.too_long == "error":
            raise RunError(f"{len(over)} input lines are longer than encoder.max_length ({limit} tokens; the "
                           f"first is line {over[0]}); the spec says too_long: error")
        if over:
            I.warn(f"{len(over)} input lines cut to encoder.max_length ({limit} tokens)")
        seqs = [s[:limit] for s in seqs]
        outputs = [""] * len(seqs)
        todo = [i for i, s in enumerate(seqs) if s]
        if todo:
            src = ids([seqs[i] for i in todo], self.info["source_vocab"]).to(self.device)
            for i, h in zip(todo, decode_all(self.model, src, spec, spec.train.batch_size)):
                outputs[i] = X.detokenize([self.info["target_vocab"][t] for t in h], tokenizer)
        return outputs


def load_run(run_dir, checkpoint: str = "best", device="cpu") -> Run:
    """A trained run folder (OUT/<name>/) loaded for use: its spec, its networks on `device`,
    and its data preprocessing. checkpoint: "best" (falls back to "last") or "last"."""
    if checkpoint not in ("best", "last"):
        raise SpecError([Problem("checkpoint", f"'{checkpoint}': use best or last", str(run_dir))])
    spec = open_run(run_dir)
    state = load_checkpoint(checkpoint_path(run_dir, checkpoint))
    return Run(run_dir, spec, state, device, checkpoint)
