"""`kind: seq2seq`: the encoder-decoder of the notes (week 9), recurrent or transformer.

    data     sequence pairs -> vocabularies from the train split (<PAD> <GO> <EOS> <UNK>
             first) -> padded id tensors; a target y is framed as <GO> y (decoder input)
             and y <EOS> (what it must predict)
    model    encoder: its layer list over the source (recurrent layers packed, attention
             masked, so padding changes nothing) -> outputs and the last recurrent
             layer's final state (if any);
             recurrent decoder: bridge(final state) -> first state; embedding ->
             recurrent -> [attention over the encoder outputs] -> layers -> projection;
             transformer decoder: embedding -> [positions] -> transformer_decoder_layer
             layers (causal self-attention, cross-attention to the encoder outputs) ->
             layers -> projection to the vocabulary (networks: seq2seq_nets.py)
    train    teacher forcing: the true previous token is the input (for a share
             `teacher_forcing` of the steps; otherwise the model's own last guess);
             cross-entropy over target tokens, padding ignored
    decode   from <GO>, feed back the decoded token until <EOS> or decoder.max_length:
             greedy, or beam search (seq2seq_search.py); a transformer decoder keeps
             each layer's keys and values, so each step runs one position
    metrics  loss, accuracy (per token) and perplexity with teacher forcing; exact_match
             and bleu on decoded sequences (train: the first 2,000 training pairs, on
             diagnostic epochs)
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn


from ..data import text as X
from ..data.text import Corpus, _sizes, read_pairs
from ..compiler import Compiled, Recurrent, Row, check_size, compile_network, materialize, on_meta
from ..errors import RunError, SpecError
from ..spec import layers as L
from .base import Kind
from .seq2seq_nets import Attention, Bridge, Decoder, TransformerDecoder, tail_names
from .seq2seq_search import EOS_ID, GO_ID, PAD_ID, beam_search, greedy, reorder, stepper

UNK_ID = 3  # after <PAD> <GO> <EOS>: the order of text.SEQ2SEQ_SPECIALS
RECURRENT = {"rnn", "lstm", "gru"}
SELF_ATTENTION = {"multi_head_attention", "transformer_encoder_layer"}
ATTENTION = {*SELF_ATTENTION, "transformer_decoder_layer", "position_embedding"}
PER_STEP = {"embedding", "dropout", "linear", "layer_norm", *RECURRENT, *ATTENTION,
            *(c.tag() for c in L.ACTIVATIONS)}
METRICS = {"accuracy", "perplexity", "exact_match", "bleu"}
TRAIN_DECODED = 2000  # training pairs decoded each epoch for train/exact_match and train/bleu


def ids(seqs: list[list[str]], vocab: list[str], frame: bool = False) -> torch.Tensor:
    """Token lists -> [N, T] ids padded with <PAD>; framed: <GO> y <EOS>."""
    index = {t: i for i, t in enumerate(vocab)}
    rows = [X.encode(s, index) for s in seqs]
    if frame:
        rows = [[GO_ID, *r, EOS_ID] for r in rows]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), max([1, *lengths.tolist()])), PAD_ID, dtype=torch.long)
    # one flat tensor scattered into place: a tensor per row cost ~0.2 s for 12,000 pairs
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    out[torch.arange(out.shape[1])[None, :] < lengths[:, None]] = flat
    return out


# --- the networks: Attention, Bridge and Decoder are in seq2seq_nets.py ---
def encode(encoder: nn.Module, src):
    """Outputs [B, S, D], the last recurrent layer's final state (None without one), and the
    mask of real tokens."""
    lengths = (src != PAD_ID).sum(1).clamp_min(1)
    mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths[:, None]
    x, state = src, None
    for m in encoder._modules.values():
        if isinstance(m, Recurrent):
            x, state = m.steps(x, lengths)  # packed: padding changes nothing
        elif getattr(m, "takes_mask", False):
            x = m(x, mask=~mask)  # attention leaves padding out
        else:
            x = m(x)
    return x, state, mask


# --- compiling: the two layer lists and the wiring, every problem at its line ---
class _Shifted:
    """Positions for a slice of a layer list compiled on its own: its item i is item i + k."""

    def __init__(self, spec, prefix: tuple, k: int):
        self.spec, self.prefix, self.k = spec, prefix, k

    def problem(self, path, message):
        n = len(self.prefix)
        if tuple(path[:n]) == self.prefix and len(path) > n and isinstance(path[n], int):
            path = (*path[:n], path[n] + self.k, *path[n + 1:])
        return self.spec.problem(path, message)


def _block_layers(part, use: str):
    """A block's layers as validated (with its params' defaults), and their path's tail."""
    d = part.blocks.get(use)
    if d is None:
        return None, ()
    return (d.layers, ("blocks", use, "layers")) if hasattr(d, "layers") else (d, ("blocks", use))


def _types(part, layers=None, seen=()) -> set[str]:
    """Every layer type in a side's list, its blocks' layers included."""
    out = set()
    for layer in part.layers if layers is None else layers:
        out.add(layer.type)
        if layer.type == "block" and layer.use not in seen:
            inner = _block_layers(part, layer.use)[0]
            out |= _types(part, inner, (*seen, layer.use)) if inner else set()
    return out


def _check_layers(spec, side: str, problems: list, soft: list) -> list[int]:
    """Layers a step-by-step decoder (and a packed encoder) can run; the recurrent positions.
    `soft` gets the problems that still let the networks be built (and checked further)."""
    part = getattr(spec, side)
    recurrent = any(layer.type in RECURRENT for layer in part.layers)
    checked: set[str] = set()  # blocks, each checked once however often it is used

    def check(path, layer, in_block):
        here = (*path, layer.type)
        if layer.type == "block":  # its layers follow the same rules (an unknown block: the compiler says so)
            layers, tail = _block_layers(part, layer.use)
            if layers is not None and layer.use not in checked:
                checked.add(layer.use)
                for j, sub in enumerate(layers):
                    check((side, *tail, j), sub, True)
        elif layer.type in RECURRENT and in_block:
            problems.append(spec.problem(here, f"a recurrent layer cannot be in a seq2seq {side}'s block: the "
                                               "wiring reads its state; put it in the layer list itself (stack "
                                               "cells with num_layers: N)"))
        elif layer.type not in PER_STEP and not (in_block and layer.type == "add"):
            problems.append(spec.problem(here, f"{layer.type} cannot be in a seq2seq {side}: it takes embedding, "
                                               "rnn, lstm, gru, transformer_encoder_layer, multi_head_attention, "
                                               "position_embedding, dropout, linear, layer_norm, activation layers "
                                               "and blocks of them (add inside blocks; transformer_decoder_layer "
                                               "in the decoder): layers that keep one output per time step"))
        elif layer.type == "transformer_decoder_layer" and side == "encoder":
            problems.append(spec.problem(here, "transformer_decoder_layer attends to the encoder's output, so it "
                                               "belongs in the decoder; the encoder takes transformer_encoder_layer"))
        elif side == "decoder" and recurrent and layer.type in ATTENTION:
            problems.append(spec.problem(here, f"{layer.type} cannot be in a recurrent decoder, which runs its "
                                               "layers one step at a time: use decoder.attention to read the "
                                               "encoder, or make the decoder a transformer (no rnn/lstm/gru, "
                                               "transformer_decoder_layer layers)"))
        elif side == "decoder" and layer.type in SELF_ATTENTION | {"transformer_decoder_layer"} and not layer.causal:
            fix = "remove 'causal: false'" if layer.type == "transformer_decoder_layer" else "set causal: true"
            soft.append(spec.problem((*here, "causal"), "a decoder writes left to right: its self-attention must "
                                                        f"not see later tokens; {fix}"))
        elif layer.type in RECURRENT and layer.output != "sequence":
            problems.append(spec.problem((*here, "output"), f"recurrent layers of a seq2seq {side} pass on the "
                                                            f"whole sequence (the wiring reads their states "
                                                            f"itself): remove 'output: {layer.output}'"))

    for i, layer in enumerate(part.layers):
        if layer.name is not None or layer.inputs is not None:
            problems.append(spec.problem((side, "layers", i), f"a seq2seq {side} is a chain of layers: "
                                                              "remove name/inputs here"))
        check((side, "layers", i), layer, False)
    return [i for i, layer in enumerate(part.layers) if layer.type in RECURRENT]


def _net(layers, blocks):
    return SimpleNamespace(layers=layers, input_dtype="long", blocks=blocks, input_shape=None)


def compile(spec, ctx: dict) -> dict[str, Compiled]:
    """{encoder, decoder} on the meta device; ctx has source/target_vocab_size from the data."""
    problems: list = []
    sv, tv = (_size(spec, side, ctx.get(f"{side}_vocab_size"), problems) for side in ("source", "target"))
    if spec.vocab.shared and sv != tv:
        raise SpecError([spec.problem(("vocab", "shared"), f"a shared vocabulary has one size, but the source's "
                                                           f"is {sv} and the target's {tv}")])
    soft: list = []  # problems that still let the networks be built: reported with everything found there
    enc_rec = _check_layers(spec, "encoder", problems, soft)
    dec_rec = _check_layers(spec, "decoder", problems, soft)
    att = spec.decoder.attention
    transformer = not dec_rec and "transformer_decoder_layer" in _types(spec.decoder)
    if transformer:
        if att is not None:
            soft.append(spec.problem(("decoder", "attention"), "a transformer decoder reads the encoder "
                                                               "through its transformer_decoder_layer layers: "
                                                               "remove decoder.attention"))
        if spec.decoder.bridge != "auto":
            soft.append(spec.problem(("decoder", "bridge"), "a transformer decoder has no recurrent state "
                                                            "to start from the encoder's: remove decoder.bridge"))
    elif len(dec_rec) != 1:
        problems.append(spec.problem(("decoder", "layers"), f"the decoder has exactly one recurrent layer (stack "
                                                            f"cells with num_layers: N), or it is a transformer "
                                                            f"(transformer_decoder_layer layers and no recurrent "
                                                            f"one); it has {len(dec_rec)} recurrent layers"))
    elif spec.decoder.layers[dec_rec[0]].bidirectional:
        r = dec_rec[0]
        problems.append(spec.problem(("decoder", "layers", r, spec.decoder.layers[r].type, "bidirectional"),
                                     "a decoder writes left to right, one token at a time: it cannot be "
                                     "bidirectional"))
    if not enc_rec and not transformer and len(dec_rec) == 1:
        if att is None:
            problems.append(spec.problem(("encoder", "layers"), "the encoder has no recurrent layer (rnn, lstm or "
                                                                "gru), so no final state starts the decoder: add "
                                                                "decoder.attention to read the encoder's outputs, "
                                                                "or a recurrent layer to the encoder"))
        elif spec.decoder.bridge in ("copy", "linear"):
            problems.append(spec.problem(("decoder", "bridge"), f"the encoder has no recurrent layer, so there is "
                                                                f"no final state to {spec.decoder.bridge}: use "
                                                                f"bridge: zeros (the decoder reads the source "
                                                                f"through attention)"))
    if problems:
        raise SpecError(problems + soft)
    problems = soft
    enc = compile_network(spec, _net(spec.encoder.layers, spec.encoder.blocks), ("encoder",), problems,
                          {"vocab_size": sv, "pad_index": PAD_ID}, input_shape=[spec.encoder.max_length])
    T = spec.decoder.max_length + 1  # <GO> y, or y <EOS>
    if transformer:
        return _transformer(spec, enc, tv, T, problems)
    r = dec_rec[0]
    head = compile_network(spec, _net(spec.decoder.layers[:r + 1], spec.decoder.blocks), ("decoder",), problems,
                           {"vocab_size": tv}, input_shape=[T])
    if tv is None and head is not None:
        problems.append(spec.problem(("decoder",), "the projection to the target vocabulary needs its size: give "
                                                   "the spec a data section, or state vocab.target_size"))
    if enc is None or head is None or tv is None:
        raise SpecError(problems)
    enc_rnn = spec.encoder.layers[enc_rec[-1]] if enc_rec else None
    dec_rnn = spec.decoder.layers[r]
    H, D = head.output_shape[-1], enc.output_shape[-1]
    if att is not None and att.type == "dot" and H != D:
        problems.append(spec.problem(("decoder", "attention"),
                                     f"dot attention compares the decoder's output ({H} values) with the "
                                     f"encoder's ({D}): make them equal, or use general or additive attention"))
    width = H + D if att is not None else H
    tail = None
    if r + 1 < len(spec.decoder.layers):
        ns = SimpleNamespace(layers=spec.decoder.layers[r + 1:], input_dtype="float", blocks=spec.decoder.blocks,
                             input_shape=None)
        tail = compile_network(_Shifted(spec, ("decoder", "layers"), r + 1), ns, ("decoder",), problems, {},
                               input_shape=[T, width])
        if tail is not None:
            width = tail.output_shape[-1]
    enc_layers = enc_rnn.num_layers if enc_rnn else 0
    enc_size = enc_rnn.hidden_size * (2 if enc_rnn.bidirectional else 1) if enc_rnn else 0
    fits = enc_layers == dec_rnn.num_layers and enc_size == dec_rnn.hidden_size
    mode = spec.decoder.bridge if spec.decoder.bridge != "auto" else (
        "zeros" if enc_rnn is None else "copy" if fits else "linear")
    if mode == "copy" and not fits:
        problems.append(spec.problem(("decoder", "bridge"),
                                     f"copy needs the same layers and sizes on both sides: the encoder's last "
                                     f"recurrent layer has {enc_rnn.num_layers} x {enc_size}, the decoder's "
                                     f"{dec_rnn.num_layers} x {dec_rnn.hidden_size}: use bridge: linear"))
    if mode == "zeros" and att is None:
        problems.append(spec.problem(("decoder", "bridge"), "with bridge: zeros and no attention the decoder "
                                                            "never sees the source: add attention, or use copy or linear"))
    _check_tied(spec, enc, head, problems)
    if problems:
        raise SpecError(problems)
    with on_meta():
        attention = Attention(att.type, H, D, getattr(att, "hidden_size", None)) if att is not None else None
        bridge = Bridge(mode, enc_layers, enc_size, enc_rnn is not None and enc_rnn.type == "lstm",
                        dec_rnn.num_layers, dec_rnn.hidden_size, dec_rnn.type == "lstm")
        projection = nn.Linear(width, tv)
    rows = [_row("bridge", f"bridge ({mode})", [dec_rnn.num_layers, dec_rnn.hidden_size], bridge)]
    rows += head.rows
    head_mods, rows = _tied(spec, enc, head, rows)
    if attention is not None:
        rows.append(_row("attention", f"attention ({att.type})", [T, H + D], attention))
    renamed = tail_names(spec.decoder.layers[:r + 1], spec.decoder.layers[r + 1:])
    tail_mods = [(renamed[n], m) for n, m in tail.module._modules.items()] if tail is not None else []
    if tail is not None:
        rows += [Row(renamed[x.name], x.type, x.output_shape, x.parameters, x.trainable) for x in tail.rows]
    rows.append(_row("projection", "linear", [T, tv], projection))
    decoder = Decoder(head_mods, attention, tail_mods, projection, bridge, renamed)
    dec = Compiled(decoder, rows, (T,), (T, tv), head.inits + (tail.inits if tail else []))
    for name, c in (("encoder", enc), ("decoder", dec)):
        check_size(spec, c, (name,), problems)
    if problems:
        raise SpecError(problems)
    return {"encoder": enc, "decoder": dec}


def _transformer(spec, enc, tv, T: int, problems: list) -> dict[str, Compiled]:
    """A transformer decoder: its layer list compiled whole, each transformer_decoder_layer
    reading the encoder's outputs as its memory; then the projection."""
    # an encoder that failed still lets the decoder be checked, as if its memory were as wide as the target
    memory = tuple(enc.output_shape) if enc is not None else "target"
    dec = compile_network(spec, _net(spec.decoder.layers, spec.decoder.blocks), ("decoder",), problems,
                          {"vocab_size": tv, "memory": memory}, input_shape=[T])
    if tv is None and dec is not None:
        problems.append(spec.problem(("decoder",), "the projection to the target vocabulary needs its size: give "
                                                   "the spec a data section, or state vocab.target_size"))
    if enc is None or dec is None or tv is None:
        raise SpecError(problems)
    _check_tied(spec, enc, dec, problems)
    if problems:
        raise SpecError(problems)
    with on_meta():
        projection = nn.Linear(dec.output_shape[-1], tv)
    mods, rows = _tied(spec, enc, dec, list(dec.rows))
    rows.append(_row("projection", "linear", [T, tv], projection))
    out = {"encoder": enc, "decoder": Compiled(TransformerDecoder(mods, projection), rows, (T,), (T, tv), dec.inits)}
    for name, c in out.items():
        check_size(spec, c, (name,), problems)
    if problems:
        raise SpecError(problems)
    return out


def _check_tied(spec, enc, dec, problems: list) -> None:
    if spec.vocab.shared:
        e, d = enc.module._modules["embedding_1"], dec.module._modules.get("embedding_1")
        if d is not None and e.weight.shape != d.weight.shape:
            problems.append(spec.problem(("decoder", "layers", 0, "embedding"),
                                         f"vocab.shared ties the decoder's embedding to the encoder's: give both "
                                         f"the same size (the encoder's is {list(e.weight.shape)}, this one "
                                         f"{list(d.weight.shape)})"))


def _tied(spec, enc, dec, rows: list) -> tuple[list, list]:
    """The decoder's (name, module) pairs and summary rows; with a shared vocabulary its
    embedding is the encoder's table, counted once (in the encoder)."""
    mods = list(dec.module._modules.items())
    if spec.vocab.shared:
        mods = [(n, enc.module._modules["embedding_1"] if n == "embedding_1" else m) for n, m in mods]
        rows = [Row(x.name, x.type, x.output_shape, 0, 0) if x.name == "embedding_1" else x for x in rows]
    return mods, rows


def _size(spec, side: str, data: int | None, problems: list) -> int | None:
    """A vocabulary size: the spec's vocab.<side>_size when stated (the data's must fit), else the data's."""
    stated = getattr(spec.vocab, f"{side}_size")
    if stated is not None and data is not None and stated < data:
        problems.append(spec.problem(("vocab", f"{side}_size"), f"{side}_size {stated} is smaller than the data's "
                                     f"{side} vocabulary of {data} tokens (4 special ones included)"))
    return stated if stated is not None else data


def _row(name, kind, shape, module) -> Row:
    n = sum(p.numel() for p in module.parameters())
    return Row(name, kind, list(shape), n, n)


def build(spec, source_vocab, target_vocab) -> nn.ModuleDict:
    nets = compile(spec, _sizes(source_vocab, target_vocab))
    torch.manual_seed(spec.seed)
    return nn.ModuleDict({k: materialize(c) for k, c in nets.items()})


# --- running the model ---
def teacher_forced(model, src, tgt, ratio: float = 1.0):
    """Logits [B, T, V] for target positions 1..T given <GO> y[:-1]: the true previous token
    as input, or (with probability 1 - ratio at each step) the model's own last guess."""
    keys, state, mask = encode(model["encoder"], src)
    dec = model["decoder"]
    state = dec.begin(state)
    tgt_in = tgt[:, :-1]
    if ratio >= 1:
        return dec(tgt_in, state, (keys, mask))[0]
    out, tok = [], tgt_in[:, 0]
    for t in range(tgt_in.shape[1]):
        logits, state = dec(tok[:, None], state, (keys, mask))
        out.append(logits)
        if t + 1 < tgt_in.shape[1]:
            own = logits[:, -1].argmax(-1)
            tok = torch.where(torch.rand(len(tok), device=tok.device) < ratio, tgt_in[:, t + 1], own)
    return torch.cat(out, 1)


@torch.no_grad()
def decode(model, src, search, max_length: int) -> list[list[int]]:
    """Token ids (without <EOS>) for each source row, by the spec's search."""
    keys, state, mask = encode(model["encoder"], src)
    dec = model["decoder"]
    state = dec.begin(state)
    B = src.shape[0]
    if search.type == "beam" and search.width > 1:
        k = search.width
        rows = torch.arange(B, device=src.device).repeat_interleave(k)
        memory = (keys[rows], mask[rows])
        return beam_search(stepper(dec, memory), reorder(state, rows), B, k, max_length,
                           search.length_penalty, src.device)
    return greedy(stepper(dec, (keys, mask)), state, B, max_length, src.device)


# --- metrics ---
class Split:
    """One split as tensors, plus its target tokens as written (for exact match and BLEU)."""

    def __init__(self, pairs, corpus: Corpus, device):
        xs, ys = pairs
        self.src = ids(xs, corpus.source_vocab).to(device)
        self.tgt = ids(ys, corpus.target_vocab, frame=True).to(device)
        self.sources, self.targets = xs, ys

    def head(self, n: int) -> Split:
        """Its first n pairs, sharing its tensors (padded to the whole split's longest: every
        pass trims its batches)."""
        part = object.__new__(Split)
        part.src, part.tgt, part.sources, part.targets = self.src[:n], self.tgt[:n], self.sources[:n], self.targets[:n]
        return part


def _trim(src, tgt):
    """A batch cut to its longest sequences (packing skips padding, this skips its cost too)."""
    return src[:, :int((src != PAD_ID).sum(1).max())], tgt[:, :int((tgt != PAD_ID).sum(1).max())]


@torch.no_grad()
def measure(model, split: Split, names: set, spec, loss_fn, vocab: list[str], prefix: str = "val",
            forced: bool = True, hyps: list | None = None) -> dict:
    """Teacher-forced loss, accuracy (per target token, <EOS> included) and perplexity over
    `split`; exact_match and bleu of its decoded sequences against the targets as written.
    forced=False: the decoded metrics only (no teacher-forced pass); `hyps`, a list, receives
    the decoded token ids (the epoch's shown examples reuse them)."""
    batch_size = spec.train.batch_size
    model.eval()
    out = _forced(model, split, names, batch_size, loss_fn, prefix) if forced else {}
    if names & {"exact_match", "bleu"}:
        decoded = decode_all(model, split.src, spec, batch_size)
        if hyps is not None:
            hyps[:] = decoded
        words = [[vocab[i] for i in h] for h in decoded]
        if "exact_match" in names:
            out[f"{prefix}/exact_match"] = sum(w == t for w, t in zip(words, split.targets)) / max(len(words), 1)
        if "bleu" in names:
            out[f"{prefix}/bleu"] = X.bleu(words, split.targets, _tokenizer(spec)[0])
    return out


def _forced(model, split: Split, names: set, batch_size: int, loss_fn, prefix: str) -> dict:
    total = nll = 0.0
    right = count = 0
    for i in range(0, len(split.src), batch_size * 4):
        src, tgt = _trim(split.src[i:i + batch_size * 4], split.tgt[i:i + batch_size * 4])
        logits = teacher_forced(model, src, tgt)
        y = tgt[:, 1:]
        real = y != PAD_ID
        n = int(real.sum())
        flat, yf = logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1)
        total += float(loss_fn(flat, yf)) * (n if loss_fn.reduction == "mean" else 1)
        if "perplexity" in names:  # (computed only when asked: a second cross-entropy over the logits)
            nll += float(nn.functional.cross_entropy(flat, yf, ignore_index=PAD_ID, reduction="sum"))
        if "accuracy" in names:
            right += int(((logits.argmax(-1) == y) & real).sum())
        count += n
    out = {f"{prefix}/loss": total / max(count, 1) if loss_fn.reduction == "mean" else total}
    if "accuracy" in names:
        out[f"{prefix}/accuracy"] = right / max(count, 1)
    if "perplexity" in names:
        out[f"{prefix}/perplexity"] = math.exp(min(nll / max(count, 1), 50))
    return out


def decode_all(model, src, spec, batch_size: int) -> list[list[int]]:
    out = []
    for i in range(0, len(src), batch_size * 4):
        s = src[i:i + batch_size * 4]
        out += decode(model, s[:, :int((s != PAD_ID).sum(1).max())], spec.decoder.search, spec.decoder.max_length)
    return out


def _loss(spec):
    lo = spec.loss
    if lo.weight is not None:
        raise SpecError([spec.problem(("loss", "cross_entropy", "weight"),
                                      "class weights do not apply to seq2seq: its target vocabulary comes from "
                                      "the data; remove weight")])
    if lo.ignore_index != -100:
        raise SpecError([spec.problem(("loss", "cross_entropy", "ignore_index"),
                                      "seq2seq always ignores <PAD> (id 0) and nothing else: remove ignore_index")])
    return nn.CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=lo.label_smoothing, reduction=lo.reduction)


def _check(spec) -> set:
    """Sections training needs, and metrics that mean something here."""
    problems = []
    if spec.data is None:
        problems.append(spec.problem((), "'data' is required to train: e.g. 'data: {source: {sort_letters: "
                                         "10000}, validation_split: 0.1}'"))
    if spec.optimizer is None:
        problems.append(spec.problem((), "'optimizer' is required to train: e.g. 'optimizer: {adam: {lr: 0.001}}'"))
    for i, m in enumerate(spec.train.metrics):
        if m.type not in METRICS:
            problems.append(spec.problem(("train", "metrics", i),
                                         f"{m.type} is not a seq2seq metric; use accuracy (per token), "
                                         "perplexity, exact_match or bleu"))
    if problems:
        raise SpecError(problems)
    return {m.type for m in spec.train.metrics}


def samples_markdown(split: Split, hyps, vocab, tokenizer: str, n: int = 8) -> str:
    """A few decoded examples as a TensorBoard (markdown) table."""
    lines = ["| source | decoded | target |", "|---|---|---|"]
    for s, h, t in list(zip(split.sources, hyps, split.targets))[:n]:
        cells = (X.detokenize(s, tokenizer), X.detokenize([vocab[i] for i in h], tokenizer),
                 X.detokenize(t, tokenizer))
        lines.append("| " + " | ".join(c.replace("|", "\\|") or " " for c in cells) + " |")
    return "\n".join(lines)


def _tokenizer(spec) -> tuple[str, bool]:
    src = spec.data.source
    return ("char", False) if src.type == "sort_letters" else (src.tokenizer, src.lowercase)


# --- training ---
class Seq2Seq(Kind):
    """`kind: seq2seq`: teacher-forced steps; validation decodes (greedy or beam)."""

    def check(self) -> str:
        from .network import check_monitor
        self.names = _check(self.spec)
        return check_monitor(self.spec)

    def tags(self) -> list[str]:
        from .network import produced_tags
        return produced_tags(self.spec)

    def setup(self, engine) -> None:
        spec, device = self.spec, engine.device
        self.corpus = corpus = read_pairs(spec)
        self.loss_fn = _loss(spec)
        self.sum_loss = nn.CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=self.loss_fn.label_smoothing,
                                            reduction="sum")
        self.model = build(spec, corpus.source_vocab, corpus.target_vocab).to(device)
        self.nets = {"model": self.model}
        self.data = {k: Split(v, corpus, device) for k, v in corpus.splits.items()}
        self.train_decoded = self.data["train"].head(TRAIN_DECODED)  # (not encoded twice)
        self.hyps = []
        self.src, self.tgt = self.data["train"].src, self.data["train"].tgt
        self.size = len(self.src)
        self.splits = set(self.data) - {"train"}
        self.tokenizer = _tokenizer(spec)[0]

    def optimizers(self) -> dict:
        return {"model": (self.spec.optimizer, self.model.parameters())}

    def load_state(self, state: dict) -> None:
        if state.get("data") != self.corpus.info():
            raise RunError("the data's vocabularies differ from the checkpoint's: resuming would give token "
                           "ids new meanings; start a new run")

    def batch(self, idx):
        return _trim(self.src[idx], self.tgt[idx])

    def step(self, batch, engine) -> dict:
        src, tgt = batch
        y = tgt[:, 1:].reshape(-1)
        with engine.cast:
            logits = teacher_forced(self.model, src, tgt, self.spec.decoder.teacher_forcing)
            flat = logits.reshape(-1, logits.shape[-1]).float()
            if engine.world > 1 and self.loss_fn.reduction == "mean":
                # ranks hold different token counts: divide by the global batch's, so the
                # averaged gradient is the one process's
                total = engine.total((y != PAD_ID).sum().float())
                loss = self.sum_loss(flat, y) / (total / engine.world)
            else:
                loss = self.loss_fn(flat, y)
        engine.update(loss)
        with torch.no_grad():  # accuracy and perplexity of the tokens this step trained on: no second pass
            real = y != PAD_ID
            if "accuracy" in self.names:
                self.right.append(((flat.argmax(-1) == y) & real).sum())
            if "perplexity" in self.names:
                self.nll.append(nn.functional.cross_entropy(flat.detach(), y, ignore_index=PAD_ID, reduction="sum"))
            if self.names & {"accuracy", "perplexity"}:
                self.tokens.append(real.sum())
        return {"train/loss": loss.item()}

    def start_epoch(self, epoch: int) -> None:
        self.right, self.nll, self.tokens = [], [], []  # per step, summed once at the epoch's end

    def train_metrics(self, diagnose: bool) -> dict:
        """Per-token accuracy and perplexity of the epoch's training steps (counted as they
        ran); exact_match and bleu of the first 2,000 training pairs decoded, only on
        diagnostic epochs: decoding is the expensive part."""
        out = {}
        n = max(int(torch.stack(self.tokens).sum()), 1) if self.tokens else 1
        if "accuracy" in self.names and self.right:
            out["train/accuracy"] = int(torch.stack(self.right).sum()) / n
        if "perplexity" in self.names and self.nll:
            out["train/perplexity"] = math.exp(min(float(torch.stack(self.nll).sum()) / n, 50))
        decoded = self.names & {"exact_match", "bleu"}
        if diagnose and decoded:
            self.model.eval()
            with torch.no_grad():
                out.update(measure(self.model, self.train_decoded, decoded, self.spec, self.loss_fn,
                                   self.corpus.target_vocab, "train", forced=False))
            self.model.train()
        return out

    def evaluate(self, split: str) -> dict:
        self.hyps = []  # the split's decoded sequences (when its metrics decode), for epoch_end
        return measure(self.model, self.data[split], self.names, self.spec, self.loss_fn,
                       self.corpus.target_vocab, split, hyps=self.hyps)

    def epoch_end(self, engine, epoch: int, diagnose: bool, metrics: dict) -> dict:
        if engine.tb is not None:  # eight decoded examples: cheap enough for every epoch
            shown = self.data.get("val", self.train_decoded)
            # the validation pass just decoded them (when its metrics decode)
            hyps = self.hyps[:8] if "val" in self.data and self.hyps else \
                decode_all(self.model, shown.src[:8], self.spec, self.spec.train.batch_size)
            engine.tb.add_text("samples", samples_markdown(shown, hyps, self.corpus.target_vocab, self.tokenizer),
                               engine.step)
        return {}

    def info(self) -> dict:
        return self.corpus.info()

    def graph(self):
        return Graphable(self.model, self.spec.decoder.max_length), self.src[:2]


class Graphable(nn.Module):
    """The encoder-decoder as one module of the source ids, for TensorBoard's graph: a
    teacher-forced pass on the source itself (what is drawn is the wiring, not a result)."""

    def __init__(self, model, max_length: int):
        super().__init__()
        self.encoder, self.decoder = model["encoder"], model["decoder"]
        self.model, self.max_length = model, max_length

    def forward(self, src):
        tgt = torch.full((src.shape[0], 2), GO_ID, dtype=torch.long, device=src.device)
        return teacher_forced(self.model, src, tgt)


KIND = Seq2Seq


# --- using a trained run ---
def restore(spec, state) -> tuple[nn.ModuleDict, dict]:
    info = state.get("data") or {}
    if "source_vocab" not in info or "target_vocab" not in info:
        raise RunError("this checkpoint has no seq2seq vocabularies: it was not written by a seq2seq run")
    model = build(spec, info["source_vocab"], info["target_vocab"])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, ValueError) as e:  # other shapes, or not weights at all
        raise RunError(f"the checkpoint does not fit this spec's networks (its vocabularies have "
                       f"{len(info['source_vocab'])} source and {len(info['target_vocab'])} target tokens): "
                       f"{str(e).splitlines()[0][:200]}") from None
    return model.eval(), info


def evaluate(spec, state, split=None) -> dict:
    """A checkpoint's metrics on a split of the spec's data (default: test, else val), encoded
    with the checkpoint's vocabularies."""
    names = _check(spec)
    model, info = restore(spec, state)
    corpus = read_pairs(spec, (info["source_vocab"], info["target_vocab"]))
    split = split or next((s for s in ("test", "val") if s in corpus.splits), "train")
    if split not in corpus.splits:
        raise SpecError([spec.problem(("data",), f"the data has no '{split}' split (set data.{split}_split)")])
    return measure(model, Split(corpus.splits[split], corpus, torch.device("cpu")), names, spec, _loss(spec),
                   info["target_vocab"], split)


