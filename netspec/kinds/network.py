"""The supervised training loop: one network, one loss, in-memory data batched by slicing.

    for epoch: shuffle (seeded per epoch) -> step over batches -> validate -> log ->
               schedule -> checkpoint -> early stop
    then: test with the best checkpoint, write metrics.json.
"""
from __future__ import annotations

import math
import numpy as np

import torch
from torch import nn

from .. import data as D
from ..compiler import check_size, compile_network, materialize
from ..compiler.incremental import Incremental, why_not as why_not_incremental
from ..errors import RunError, SpecError
from ..data.augment import generator_for
from ..data.text import detokenize, tokenize
from . import compile_spec
from .base import Kind

def compile(spec, ctx: dict) -> dict:
    """The network of a spec, on the meta device (SpecError with every problem)."""
    problems = []
    c = compile_network(spec, spec.model, ("model",), problems, ctx)
    if c is not None:
        check_size(spec, c, ("model",), problems)
    if problems:
        raise SpecError(problems)
    return {"model": c}


LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "nll": nn.NLLLoss, "bce": nn.BCELoss,
          "bce_with_logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss, "l1": nn.L1Loss,
          "smooth_l1": nn.SmoothL1Loss, "huber": nn.HuberLoss}
INDEX_LOSSES = {"cross_entropy", "nll"}  # read class indices; the rest read values (one-hot for classes)


class Objective:
    """The loss plus how targets must look for it (indices, one-hot, values), decided once."""

    def __init__(self, spec, data: D.Dataset, out_shape: tuple):
        if spec.loss is None:
            raise SpecError([spec.problem((), "'loss' is required to train: e.g. 'loss: cross_entropy'")])
        self.kind = spec.loss.type
        kw = spec.loss.args()
        for k in ("weight", "pos_weight"):
            if kw.get(k) is not None:
                kw[k] = torch.as_tensor(kw[k], dtype=torch.float32)
            elif k in kw:
                del kw[k]
        if data.class_weights is not None:  # data.class_weight: balanced
            if self.kind not in INDEX_LOSSES or "weight" in kw:
                raise SpecError([spec.problem(("data", "class_weight"), "class_weight: balanced weights "
                                              "cross_entropy or nll without their own 'weight'; "
                                              f"the loss here is {self.kind}"
                                              + (" with a weight" if "weight" in kw else ""))])
            w = data.class_weights  # (outputs beyond the data's classes never are a target: weight 1)
            kw["weight"] = torch.cat([w, w.new_ones(max(0, out_shape[-1] - len(w)))])
        self.fn = LOSSES[self.kind](**kw)
        self.out_shape = out_shape
        self.sequence = len(out_shape) > 1 and self.kind in INDEX_LOSSES  # [T, classes] vs [T] labels
        where = ("loss",)
        classes = data.task in ("classification", "tokens")
        if self.kind in INDEX_LOSSES and not classes:
            raise SpecError([spec.problem(where, f"{self.kind} needs class labels, but this data has numeric "
                                                 "targets (regression): use mse, l1 or smooth_l1")])
        self.one_hot = classes and self.kind not in INDEX_LOSSES and out_shape[-1] > 1
        self.binary = classes and self.kind not in INDEX_LOSSES and out_shape[-1] == 1
        if self.one_hot and data.num_classes and out_shape[-1] != data.num_classes:
            raise SpecError([spec.problem(("model", "layers", len(spec.model.layers) - 1),
                                          f"{self.kind} compares the output with one-hot labels of "
                                          f"{data.num_classes} classes, but the network outputs "
                                          f"{out_shape[-1]} values")])
        if self.binary and data.num_classes and data.num_classes > 2:
            raise SpecError([spec.problem(where, f"one output and {data.num_classes} classes: give the "
                                                 f"last layer {data.num_classes} outputs, or use cross_entropy")])

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets in the form the loss reads (done once per split, not per step)."""
        if self.one_hot:
            return nn.functional.one_hot(y, self.out_shape[-1]).float()
        if self.binary:
            return y.float().reshape(-1, 1)
        if y.dtype.is_floating_point and y.dim() == 1 and self.out_shape == (1,):
            return y[:, None]
        return y

    def __call__(self, out, y):
        if self.sequence:
            return self.fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return self.fn(out, y)


class Metrics:
    """Accumulates loss and the spec's metrics over batches, without a sync per step."""

    def __init__(self, names, objective: Objective):
        self.names, self.obj = names, objective
        self.reset()

    def reset(self):
        self.n, self.loss = 0, 0.0
        self.sums: dict[str, list[torch.Tensor]] = {}  # per batch: no sync, no extra op per step
        self.counts: dict[str, int] = {}

    def _add(self, k, v, n):
        self.sums.setdefault(k, []).append(v)  # added up once, when read
        self.counts[k] = self.counts.get(k, 0) + n

    @torch.no_grad()
    def add(self, out, y, labels, loss: float):
        n = out.shape[0]
        self.n += n
        self.loss += loss * n
        out = out.float()
        for m in self.names:
            if m.type in ("accuracy", "top_k_accuracy") and labels is not None:
                if out.shape[-1] == 1:  # binary: a logit, or a probability / value near 0 or 1
                    thr = 0.0 if self.obj.kind == "bce_with_logits" else 0.5
                    pred = (out[..., 0] > thr).long()
                    hit = pred == labels
                elif m.type == "accuracy":
                    hit = out.argmax(-1) == labels
                else:
                    k = min(m.k, out.shape[-1])
                    hit = (out.topk(k, -1).indices == labels.unsqueeze(-1)).any(-1)
                if self.obj.sequence:  # padded positions (ignore_index) are not predictions
                    mask = labels != getattr(self.obj.fn, "ignore_index", -100)
                    self._add(m.type, (hit & mask).sum(), int(mask.sum()))
                else:
                    self._add(m.type, hit.sum(), hit.numel())
            elif m.type in ("mae", "mse"):
                d = out - y.float().reshape(out.shape)
                self._add(m.type, (d.abs() if m.type == "mae" else d * d).sum(), d.numel())
            elif m.type == "iou":  # summed over the split's pixels: intersection / union
                pred = out > (0.0 if self.obj.kind == "bce_with_logits" else 0.5)
                true = y.float().reshape(out.shape) > 0.5
                self._add("iou", (pred & true).sum(), 0)
                self._add("iou_union", (pred | true).sum(), 0)

    def running(self) -> dict:
        """The epoch so far, for the progress line."""
        out = {"loss": self.loss / max(self.n, 1),
               **{k: self._total(k) / max(self.counts[k], 1) for k in self.sums if k not in ("iou", "iou_union")}}
        if "iou" in self.sums:
            out["iou"] = self._total("iou") / max(self._total("iou_union"), 1.0)
        return out

    def _total(self, k) -> float:
        return float(torch.stack(self.sums[k]).sum())

    def result(self, prefix: str) -> dict:
        res = {f"{prefix}/loss": self.loss / max(self.n, 1)}
        for m in self.names:
            if m.type == "perplexity":
                res[f"{prefix}/perplexity"] = math.exp(min(res[f"{prefix}/loss"], 50))
            elif m.type == "iou" and "iou" in self.sums:
                res[f"{prefix}/iou"] = self._total("iou") / max(self._total("iou_union"), 1.0)
            elif m.type in self.sums:
                res[f"{prefix}/{m.type}"] = self._total(m.type) / max(self.counts[m.type], 1)
        return res


def require(spec) -> None:
    """The sections `netspec build` can do without but training cannot: all missing ones at once."""
    missing = [(k, ex) for k, ex in (("data", "data: {source: digits, validation_split: 0.1}"),
                                     ("loss", "loss: cross_entropy"),
                                     ("optimizer", "optimizer: {adam: {lr: 0.001}}"))
               if getattr(spec, k, None) is None]
    if missing:
        raise SpecError([spec.problem((k,), f"'{k}' is required to train: e.g. '{ex}'") for k, ex in missing])


def produced_tags(spec) -> list[str]:
    """Every metric tag a run of this spec writes."""
    splits = ["train"]
    if spec.data and spec.data.validation_split > 0:
        splits.append("val")
    if spec.data and spec.data.test_split > 0:
        splits.append("test")
    names = ["loss"] + [m.type for m in spec.train.metrics]
    return [f"{s}/{n}" for s in splits for n in names]


def check_monitor(spec) -> str:
    """The monitored tag, checked against what the run produces (at its line)."""
    from ..errors import suggest
    decoded = [i for i, m in enumerate(spec.train.metrics) if m.type in ("exact_match", "bleu")]
    if decoded and spec.kind != "seq2seq":
        raise SpecError([spec.problem(("train", "metrics", i), f"{spec.train.metrics[i].type} scores decoded "
                                      "sequences: it is a seq2seq metric (kind: seq2seq)") for i in decoded])
    tags = produced_tags(spec)
    mon = spec.train.monitor
    if mon not in tags and "monitor" not in spec.train.model_fields_set and mon == "val/loss":
        return "train/loss"  # no validation split and no monitor asked for: the only loss there is
    problems = []
    if mon not in tags:
        why = ("; data.validation_split is 0, so there are no val/ metrics" if mon.startswith("val/")
               and "val/loss" not in tags else "")
        problems.append(spec.problem(("train", "monitor"), f"'{mon}' is not a metric this run writes"
                                     f"{why}{suggest(mon, tags)}"))
    es = spec.train.early_stopping
    if es and es.monitor and es.monitor not in tags:
        problems.append(spec.problem(("train", "early_stopping", "monitor"),
                                     f"'{es.monitor}' is not a metric this run writes{suggest(es.monitor, tags)}"))
    if problems:
        raise SpecError(problems)
    return mon


def batches(n: int, size: int, order=None):
    """Index tensors of an epoch's batches (views of `order`), or slices in order."""
    if order is not None:
        return order.split(size)
    return (slice(i, i + size) for i in range(0, n, size))


@torch.no_grad()
def evaluate_split(model, objective, names, x, y, labels, batch_size, device) -> Metrics:
    model.eval()
    m = Metrics(names, objective)
    for sl in batches(len(x), batch_size * 4):
        xb, yb = x[sl].to(device, non_blocking=True), y[sl].to(device, non_blocking=True)
        out = model(xb)
        m.add(out, yb, labels[sl].to(device) if labels is not None else None, objective(out, yb).item())
    return m


def setup(spec, data: D.Dataset):
    """Networks, data fit and objective: everything checked before training starts."""
    ctx = D.vocab_context(data.vocab) if data.vocab else {}
    compiled = compile_spec(spec, **ctx)["model"]
    D.check_fits(spec, data, compiled.output_shape)
    return compiled, Objective(spec, data, compiled.output_shape)


def _prepared(data: D.Dataset, objective: Objective, device) -> dict:
    out = {}
    for k, (x, y) in data.splits.items():
        labels = y if data.task in ("classification", "tokens") else None
        out[k] = (x.to(device), objective.targets(y).to(device), labels.to(device) if labels is not None else None)
    return out


class Network(Kind):
    """`kind: network`: one network, one loss; a language model when the data is text."""

    def check(self) -> str:
        require(self.spec)
        return check_monitor(self.spec)

    def tags(self) -> list[str]:
        return produced_tags(self.spec)

    def setup(self, engine) -> None:
        spec, device = self.spec, engine.device
        self.device = device
        self.data = data = D.load(spec)
        compiled, self.objective = setup(spec, data)
        self.model = materialize(compiled, spec.seed).to(device)
        self.nets = {"model": self.model}
        self.prepared = _prepared(data, self.objective, device)
        self.x, self.y, self.labels = self.prepared["train"]
        self.same_labels = self.labels is self.y  # index targets: the labels are the targets, no second gather
        self.size = len(self.x)
        self.splits = set(self.prepared) - {"train"}
        self.train_m = Metrics(spec.train.metrics, self.objective)

    def optimizers(self) -> dict:
        return {"model": (self.spec.optimizer, self.model.parameters())}

    def load_state(self, state: dict) -> None:
        old = (state.get("data") or {}).get("vocab")
        if old is not None and old != self.data.vocab:  # same size or not: ids would change meaning
            raise RunError(f"the data's vocabulary ({len(self.data.vocab or [])} tokens) differs from the one in "
                           f"the run's last.pt ({len(old)} tokens): the text changed; resuming would give token "
                           "ids new meanings; start a new run")

    def start_epoch(self, epoch: int) -> None:
        self.train_m.reset()
        self.epoch, self.step_in_epoch = epoch, 0

    def batch(self, idx):
        labels = self.labels
        xb = self.x[idx]  # a slice of a tensor, or rows gathered from a memory-mapped file (data.Lazy)
        if self.data.augment is not None:  # draws depend on (seed, epoch, step) only: resume is exact
            self.step_in_epoch += 1
            xb = self.data.augment(xb, generator_for(self.spec.seed, self.epoch, self.step_in_epoch, xb.device))
        return (xb, self.y[idx],
                None if labels is None else None if self.same_labels else labels[idx])

    def step(self, batch, engine) -> dict:
        xb, yb, lb = batch
        with engine.cast:
            out = self.model(xb)
            loss = self.objective(out, yb)
        engine.update(loss)
        lv = loss.item()
        self.train_m.add(out.detach(), yb, yb if self.same_labels else lb, lv)
        return {"train/loss": lv}

    def running(self) -> dict:
        return self.train_m.running()

    def train_metrics(self, diagnose: bool) -> dict:
        out = self.train_m.result("train")
        out.pop("train/loss")  # the engine's mean of the steps' losses
        return out

    def evaluate(self, split: str) -> dict:
        x, y, labels = self.prepared[split]
        return evaluate_split(self.model, self.objective, self.spec.train.metrics, x, y, labels,
                              self.spec.train.batch_size, self.device).result(split)

    def epoch_end(self, engine, epoch: int, diagnose: bool, metrics: dict) -> dict:
        if engine.tb is not None and diagnose and self.data.task == "tokens":  # a language model: what it writes
            log_sample(engine.tb, self.model, self.spec, self.data.vocab, engine.step)
        return {}

    def info(self) -> dict:
        return self.data.info()

    def graph(self):
        return self.model, self.prepared.get("val", self.prepared["train"])[0][:2]


KIND = Network


# --- using a trained run ---
def restore(spec, state) -> tuple[nn.Module, dict]:
    info = state.get("data") or {}
    ctx = D.vocab_context(info["vocab"]) if info.get("vocab") else {}
    compiled = compile_spec(spec, **ctx)["model"]
    model = materialize(compiled, spec.seed)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, ValueError) as e:  # other shapes, or not weights at all
        raise RunError(f"the checkpoint does not fit this spec's network: {str(e).splitlines()[0][:200]}") from None
    return model.eval(), info


def evaluate(spec, state, split=None) -> dict:
    """A checkpoint's metrics on a split (default: test; val for data without a test split,
    as a language model's usually is)."""
    model, info = restore(spec, state)
    D.use_vocab(spec, info.get("vocab"))  # text data: token ids as the model learned them
    data = D.load(spec, stats=info.get("stats"))  # normalised as the model was trained
    compiled, objective = setup(spec, data)
    split = split or next((s for s in ("test", "val") if s in data.splits), "train")
    if split not in data.splits:
        raise SpecError([spec.problem(("data",), f"the data has no '{split}' split (set data.{split}_split)"
                                      if split != "train" else "no train split")])
    (x, y, labels) = _prepared(data, objective, torch.device("cpu"))[split]
    return evaluate_split(model, objective, spec.train.metrics, x, y, labels, spec.train.batch_size,
                          torch.device("cpu")).result(split)


# --- language models: sampling ---
def _start(vocab: list[str], prime: list[str], rng) -> tuple[list[str], bool]:
    """The tokens to start from; without a prime, a line break (or a space) as if a new
    paragraph began, which is not printed."""
    if prime:
        return prime, True
    for t in ("\n", " ", "."):
        if t in vocab:
            return [t], False
    return [vocab[int(rng.integers(len(vocab)))]], False


def _next_token(out, temperature: float, generator):
    """The next token per row from the last step's logits: sampled from softmax(logits / T),
    or the most likely one when T is 0 (drawn on the CPU, where the generator lives)."""
    if out.dim() != 3:
        raise RunError(f"this network outputs {list(out.shape[1:])} per sample; a language model outputs "
                       "[time, vocabulary] (a linear: vocab layer over a sequence)")
    logits = out[:, -1].float().cpu()
    if temperature == 0:
        return logits.argmax(-1, keepdim=True).to(out.device)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).to(out.device)


def generate(model, start: list[int], n: int, length: int, temperature: float, window: int, generator,
             cached: bool | None = None):
    """n continuations of `start`, each `length` tokens, sampled from softmax(logits / T)
    (T = 0: always the most likely token).

    A causal network (compiler.incremental: embeddings, causal attention, per-step layers)
    runs on each new token only, with keys and values cached; any other network re-runs the
    last `window` tokens (the training length) for each new token, from a zero state. The
    two give the same tokens while the text fits in the window. Past it, learned positions
    run out, so the cached path starts again from the last window // 2 tokens (one pass
    over them every window // 2 new tokens): a token then sees between half the window and
    the whole of it, where the re-run path always sees the whole window. `cached` forces a
    path (None: cached when the network allows it)."""
    with torch.inference_mode():  # lighter than no_grad per call: a token costs dozens of small calls
        return _generate(model, start, n, length, temperature, window, generator, cached)


def _generate(model, start, n, length, temperature, window, generator, cached):
    device = next(model.parameters()).device
    x = torch.tensor([start] * n, dtype=torch.long, device=device)
    if cached is None:
        cached = why_not_incremental(model) is None
    if not cached:
        for _ in range(length):
            x = torch.cat([x, _next_token(model(x[:, -window:]), temperature, generator)], 1)
        return x[:, len(start):].tolist()
    steps = Incremental(model)
    out = steps.step(x[:, -window:])
    for i in range(length):
        token = _next_token(out, temperature, generator)
        x = torch.cat([x, token], 1)
        if i == length - 1:
            break
        if steps.offset < window:
            out = steps.step(token)
        else:  # no position left for the new token: start again from the window's second half
            steps.reset()
            out = steps.step(x[:, -max(1, window // 2):])
    return x[:, len(start):].tolist()


def sample_texts(spec, model, vocab, n=1, temperature=1.0, prime="", length=200, seed=0) -> list[str]:
    import torch
    src = spec.data.source
    rng = np.random.default_rng(seed)
    primed = tokenize(prime, src.tokenizer, src.lowercase) if prime else []
    unknown = sorted({t for t in primed if t not in vocab})
    if unknown:
        raise RunError(f"the prime has tokens the model never saw: {', '.join(map(repr, unknown[:10]))}")
    start, shown = _start(vocab, primed, rng)
    index = {t: i for i, t in enumerate(vocab)}
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = generate(model, [index[t] for t in start], n, length, temperature, spec.model.input_shape[0], g)
    model.train(was)
    head = detokenize(start, src.tokenizer) + ("" if src.tokenizer == "char" else " ") if shown else ""
    return [head + detokenize([vocab[i] for i in ids], src.tokenizer) for ids in out]


def as_markdown(text: str) -> str:
    """TensorBoard renders text as markdown: indent it so it shows as written."""
    return "    " + text.replace("\n", "\n    ")


def log_sample(tb, model, spec, vocab, step, length=200) -> None:
    """One sample per epoch in TensorBoard's Text tab (a fixed seed: epochs compare)."""
    text = sample_texts(spec, model, vocab, 1, 1.0, "", length, seed=0)[0]
    tb.add_text("samples", as_markdown(text), step)
