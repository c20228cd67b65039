"""Text: tokenizers, vocabularies, the text data sources, language-model sampling, BLEU.

Token ids follow one convention: a vocabulary with padding starts with the special tokens
<PAD> (0), and for seq2seq <GO> (1), <EOS> (2), <UNK> (3); sequences are padded at the
end. A language model's vocabulary is just the file's tokens, sorted (nothing is padded).
Nothing here downloads anything: every source reads a local file or makes its data.
"""
from __future__ import annotations

import csv
import io
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spec.text import PAIR_SOURCES
from . import base as D
from ..errors import RunError, SpecError
from ..files import FileProblem, check_regular, gib, memory_bytes

PAD, GO, EOS, UNK = "<PAD>", "<GO>", "<EOS>", "<UNK>"
CLASSIFIER_SPECIALS = [PAD, UNK]
SEQ2SEQ_SPECIALS = [PAD, GO, EOS, UNK]
_WORD = re.compile(r"\w+|[^\w\s]")


# --- tokens ---
def tokenize(text: str, tokenizer: str = "word", lowercase: bool = False) -> list[str]:
    """char: every character (spaces too); word: runs of letters/digits and each punctuation mark."""
    if lowercase:
        text = text.lower()
    return list(text) if tokenizer == "char" else _WORD.findall(text)


def detokenize(tokens: list[str], tokenizer: str) -> str:
    return "".join(tokens) if tokenizer == "char" else " ".join(tokens)


def build_vocab(sequences, specials: list[str], min_freq: int = 1, max_size: int | None = None) -> list[str]:
    """Special tokens, then tokens by falling frequency (ties alphabetical), rare ones dropped."""
    counts = Counter(t for s in sequences for t in s)
    kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                  key=lambda t: (-counts[t], t))
    return list(specials) + kept[:max_size]


def encode(tokens: list[str], index: dict[str, int]) -> list[int]:
    unk = index.get(UNK)
    return [index.get(t, unk) for t in tokens]


def use_vocab(spec, vocab: list[str] | None) -> None:
    """Make a text source encode with a trained model's vocabulary (evaluating a checkpoint,
    maybe on other files) instead of building one from the data."""
    if vocab and spec.data is not None and spec.data.source.type in ("text", "text_csv"):
        spec.data.source._vocab = list(vocab)


def vocab_context(vocab: list[str]) -> dict:
    """What compiling needs from a vocabulary: its size, and the padding id when it pads."""
    ctx = {"vocab_size": len(vocab)}
    if vocab and vocab[0] == PAD:
        ctx["pad_index"] = 0
    return ctx


# --- reading files ---
def read_text(spec, path: str, key: str = "path") -> str:
    """A whole UTF-8 text file; SpecError (at data.source.<tag>.<key>) when missing, not UTF-8 or empty."""
    p = Path(path).expanduser()
    if not p.exists():
        D.fail(spec, f"no such file: {path} (relative paths start from the current directory, {Path.cwd()})", key)
    if p.is_dir():
        D.fail(spec, f"{path} is a folder; name a text file", key)
    try:
        check_regular(p)  # a device (/dev/zero) never ends, a FIFO blocks: neither is opened
    except FileProblem as e:
        D.fail(spec, str(e), key)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        D.fail(spec, f"{path} is not UTF-8 text (byte {raw[e.start]:#04x} on line {line} cannot be decoded); "
                   "convert it, e.g. iconv -f latin1 -t utf-8", key)
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the text
    if not text.strip():
        D.fail(spec, f"{path} is empty; it needs some text to learn from", key)
    return text


def _no_normalize(spec):
    if spec.data.normalize != "none":
        raise SpecError([spec.problem(("data", "normalize"), "token ids cannot be normalised: "
                                                             "remove data.normalize")])


def _window(spec, tag: str) -> int:
    shape = spec.model.input_shape
    if not shape or len(shape) != 1:
        raise SpecError([spec.problem(("model", "input_shape"),
                                      f"the {tag} source gives sequences of token ids: model.input_shape is "
                                      f"[sequence length], e.g. [100] (got {shape})")])
    return shape[0]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --- sources (data.SOURCES) ---
def text_source(src, spec) -> D.Arrays:
    """Language-model windows: x = tokens[s : s+T], y = tokens[s+1 : s+T+1]."""
    _no_normalize(spec)
    tokens = tokenize(read_text(spec, src.path), src.tokenizer, src.lowercase)
    if src.max_tokens:
        tokens = tokens[:src.max_tokens]
    T = _window(spec, "text")
    step = src.step or T
    if len(tokens) < T + 2:
        D.fail(spec, f"{src.path} has {len(tokens)} {src.tokenizer} tokens; windows of {T} (model.input_shape) "
                   f"need at least {T + 2}: use a longer text or a shorter input_shape", "path")
    vocab = src._vocab or sorted(set(tokens))
    index = {t: i for i, t in enumerate(vocab)}
    unknown = sorted(set(tokens) - set(index))
    if unknown:
        D.fail(spec, f"{src.path} has tokens the trained model never saw: "
                   f"{', '.join(map(repr, unknown[:10]))}{' ...' if len(unknown) > 10 else ''}", "path")
    ids = np.array([index[t] for t in tokens], dtype=np.int64)
    starts = np.arange(0, len(ids) - T, step)
    pos = starts[:, None] + np.arange(T)[None, :]
    return D.Arrays(ids[pos], ids[pos + 1], "tokens", vocab=vocab)


def text_csv(src, spec) -> D.Arrays:
    """Texts and labels: padded token ids [N, T] and class indices."""
    _no_normalize(spec)
    T = _window(spec, "text_csv")
    text = read_text(spec, src.path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts: the default stops at 131072 characters
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=src.delimiter))
    except csv.Error as e:
        D.fail(spec, f"{src.path} cannot be read as CSV: {e}", "path")
    rows = [r for r in rows if r]
    if len(rows) < 2:
        D.fail(spec, f"{src.path} needs a header row and at least one data row", "path")
    header = rows[0]
    for key, col in (("text", src.text), ("label", src.label)):
        if col not in header:
            D.fail(spec, f"no column '{col}' in {src.path}; columns: {', '.join(header)}", key)
    ti, li = header.index(src.text), header.index(src.label)
    texts, labels = [], []
    for n, r in enumerate(rows[1:], 2):
        if len(r) != len(header):
            D.fail(spec, f"{src.path} row {n} has {len(r)} fields, the header has {len(header)} "
                       "(quote texts that contain the delimiter)", "path")
        label = r[li].strip()
        if not label or label.lower() in ("nan", "na", "n/a", "null", "none"):
            D.fail(spec, f"{src.path} row {n}, column '{src.label}': the label is "
                         f"{repr(label) if label else 'empty'} (a missing value); every row needs a label: "
                         "fill it in or drop the row", "label")
        texts.append(tokenize(r[ti], src.tokenizer, src.lowercase))
        labels.append(label)
    texts = fit_lengths(spec, texts, T, src.too_long, "texts", ("data", "source", "text_csv", "too_long"),
                        "model.input_shape")
    # the vocabulary comes from the train split only: a validation or test word the model
    # never trained on is <UNK>, as it would be for new text
    classes = sorted(set(labels))
    y, _ = D._classes_of(labels)
    idx = D.split_indices(len(texts), spec.data.validation_split, spec.data.test_split, spec.seed,
                          y if spec.data.stratify else None)  # the split data.load makes
    vocab = src._vocab or build_vocab([texts[i] for i in idx["train"]], CLASSIFIER_SPECIALS, src.min_freq,
                                      src.max_vocab)
    index = {t: i for i, t in enumerate(vocab)}
    need = len(texts) * T * 8
    if need > memory_bytes() // 2:  # padded ids for every text: refuse before allocating them
        longest = max(map(len, texts), default=1)
        raise SpecError([spec.problem(("model", "input_shape"), f"padding {len(texts):,} texts to {T:,} tokens "
                                                                f"needs {gib(need)}, more than this machine can "
                                                                f"hold; the longest text has {longest:,} tokens: "
                                                                f"use input_shape: [{longest}]")])
    x = np.zeros((len(texts), T), dtype=np.int64)  # <PAD> is 0
    for i, toks in enumerate(texts):
        x[i, :len(toks)] = encode(toks, index)
    if len(classes) < 2:
        D.fail(spec, f"column '{src.label}' of {src.path} has a single label ({classes[0]!r}); "
                   "a classifier needs two or more", "label")
    return D.Arrays(x, y, "classification", classes, vocab)


def fit_lengths(spec, seqs: list[list], limit: int, too_long: str, what: str, where: tuple, limit_name: str):
    """Sequences over `limit` tokens: a SpecError (too_long: error) or cut with a warning."""
    over = [len(s) for s in seqs if len(s) > limit]
    if not over:
        return seqs
    if too_long == "error":
        raise SpecError([spec.problem(where, f"{len(over)} {what} are longer than {limit_name} ({limit} tokens; "
                                             f"the longest has {max(over)}): raise {limit_name}, or set "
                                             "too_long: truncate to cut them")])
    _warn(f"{len(over)} {what} cut to {limit} tokens ({limit_name}; the longest had {max(over)})")
    return [s[:limit] for s in seqs]


def _pairs_only(spec):
    if spec.kind != "seq2seq":
        tag = spec.data.source.type
        D.fail(spec, f"the {tag} source gives sequence pairs (source -> target): use it in a "
                   "'kind: seq2seq' spec; a network reads text through the text or text_csv source")


def tsv(src, spec) -> D.Arrays:
    _pairs_only(spec)
    x, y = [], []
    for n, line in enumerate(read_text(spec, src.path).splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            D.fail(spec, f"{src.path} line {n} has {len(cols)} column{'s' if len(cols) != 1 else ''}; each line "
                       "is 'source<TAB>target'", "path")
        a, b = (tokenize(c, src.tokenizer, src.lowercase) for c in cols)
        if not a or not b:
            D.fail(spec, f"{src.path} line {n} has an empty {'source' if not a else 'target'}", "path")
        x.append(a)
        y.append(b)
    return D.Arrays(x, y, "pairs")


def parallel(src, spec) -> D.Arrays:
    _pairs_only(spec)
    a = read_text(spec, src.source, "source").splitlines()
    b = read_text(spec, src.target, "target").splitlines()
    if len(a) != len(b):
        D.fail(spec, f"{src.source} has {len(a)} lines but {src.target} has {len(b)}; line i of one pairs "
                   "with line i of the other", "target")
    x, y = [], []
    for n, (s, t) in enumerate(zip(a, b), 1):
        s, t = tokenize(s, src.tokenizer, src.lowercase), tokenize(t, src.tokenizer, src.lowercase)
        if not s and not t:
            continue
        if not s or not t:
            D.fail(spec, f"line {n}: {'source' if not s else 'target'} is empty but its pair is not",
                 "source" if not s else "target")
        x.append(s)
        y.append(t)
    return D.Arrays(x, y, "pairs")


def sort_letters(src, spec) -> D.Arrays:
    """Distinct random words (seeded) and their letters sorted."""
    _pairs_only(spec)
    letters = list(src.alphabet)
    possible = sum(len(letters) ** n for n in range(src.min_length, src.max_length + 1))
    if src.samples > possible // 2:
        D.fail(spec, f"only {possible:,} distinct words exist with {len(letters)} letters and lengths "
                   f"{src.min_length}-{src.max_length}; ask for at most {possible // 2:,} samples", "samples")
    rng = np.random.default_rng(spec.seed)
    seen, words = set(), []
    while len(words) < src.samples:  # draws in bulk (a draw per word is slow); repeats are skipped
        need = src.samples - len(words) + 16
        lengths = rng.integers(src.min_length, src.max_length + 1, need)
        picks = rng.integers(0, len(letters), (need, src.max_length))
        for n, row in zip(lengths.tolist(), picks.tolist()):
            w = "".join(letters[i] for i in row[:n])
            if w not in seen and len(words) < src.samples:
                seen.add(w)
                words.append(w)
    order = {c: i for i, c in enumerate(letters)}  # sorted by the alphabet as written
    return D.Arrays([list(w) for w in words], [sorted(w, key=order.get) for w in words], "pairs")


SOURCES = {"text": text_source, "text_csv": text_csv, "tsv": tsv, "parallel": parallel,
           "sort_letters": sort_letters}



def _loaded_context(spec) -> dict:
    arrays = SOURCES[spec.data.source.type](spec.data.source, spec)
    return vocab_context(arrays.vocab)


def _pairs_context(spec) -> dict:
    return context(spec)


# data.context: vocabulary sizes for compiling, read from the data
CONTEXTS = {"text": _loaded_context, "text_csv": _loaded_context, "tsv": _pairs_context,
            "parallel": _pairs_context, "sort_letters": _pairs_context}


# --- classifier inputs for `netspec predict`: one text per line ---
def read_lines(path) -> list[str]:
    if path is None or path == "-":
        return sys.stdin.read().splitlines()
    p = Path(path)
    if not p.exists():
        raise RunError(f"no such file: {path}")
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RunError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


# --- BLEU ---
def bleu(hypotheses: list[list[str]], references: list[list[str]], tokenizer: str = "char") -> float:
    """Corpus BLEU-4 (0-100) by sacrebleu, on the detokenised text with its standard
    tokenisation (character n-grams for a char tokenizer, 13a for words) and its default
    smoothing, so scores compare with published ones. One reference per sentence."""
    import sacrebleu
    hyp = [detokenize(h, tokenizer) for h in hypotheses]
    ref = [detokenize(r, tokenizer) for r in references]
    return float(sacrebleu.corpus_bleu(hyp, [ref], tokenize="char" if tokenizer == "char" else "13a").score)


# --- sequence pairs (seq2seq) ---
@dataclass
class Corpus:
    splits: dict  # split -> (source token lists, target token lists)
    source_vocab: list[str]
    target_vocab: list[str]

    def info(self) -> dict:
        """What a checkpoint keeps: the vocabularies (token i is id i)."""
        return {"source_vocab": self.source_vocab, "target_vocab": self.target_vocab}


def read_pairs(spec, vocabs: tuple | None = None) -> Corpus:
    """The spec's pairs, length-checked and split; vocabularies from the train split
    (or the given ones: a checkpoint's)."""
    if spec.data is None:
        raise SpecError([spec.problem((), "'data' is required to train: e.g. 'data: {source: "
                                          "{sort_letters: 10000}, validation_split: 0.1}'")])
    src = spec.data.source
    if src.type not in PAIR_SOURCES:
        raise SpecError([spec.problem(("data", "source", src.type),
                                      f"seq2seq trains on sequence pairs: use a tsv, parallel or sort_letters "
                                      f"source, not {src.type}")])
    arrays = SOURCES[src.type](src, spec)
    if len(arrays.x) < 2:
        D.fail(spec, f"the data has {len(arrays.x)} pairs; training needs more")
    x = fit_lengths(spec, arrays.x, spec.encoder.max_length, spec.too_long, "source sequences",
                      ("encoder", "max_length"), "encoder.max_length")
    y = fit_lengths(spec, arrays.y, spec.decoder.max_length, spec.too_long, "target sequences",
                      ("decoder", "max_length"), "decoder.max_length")
    idx = D.split_indices(len(x), spec.data.validation_split, spec.data.test_split, spec.seed)
    splits = {k: ([x[i] for i in ix], [y[i] for i in ix]) for k, ix in idx.items()}
    if vocabs is None:
        v = spec.vocab
        xs, ys = splits["train"]
        if v.shared:
            both = build_vocab(xs + ys, SEQ2SEQ_SPECIALS, v.min_freq, v.max_size)
            vocabs = (both, both)
        else:
            vocabs = (build_vocab(xs, SEQ2SEQ_SPECIALS, v.min_freq, v.max_size),
                      build_vocab(ys, SEQ2SEQ_SPECIALS, v.min_freq, v.max_size))
    return Corpus(splits, *vocabs)


def context(spec) -> dict:
    """Vocabulary sizes for compiling (`netspec build` reads them from the data)."""
    c = read_pairs(spec)
    return _sizes(c.source_vocab, c.target_vocab)


def _sizes(source_vocab, target_vocab) -> dict:
    return {"source_vocab_size": len(source_vocab), "target_vocab_size": len(target_vocab)}
