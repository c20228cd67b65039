"""Text data sources and sequence metrics (spec side, no torch).

Token ids follow one convention everywhere: sources with padding put <PAD> at id 0 and pad
at the end of each sequence, so a network over them can pack its recurrent layers. The
loaders live in netspec/text.py.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from .base import Component

Size = Annotated[int, Field(gt=0)]
Tokenizer = Literal["char", "word"]  # word: runs of letters/digits, and each punctuation mark
TooLong = Literal["error", "truncate"]  # a sequence longer than allowed: stop, or cut it and warn


class Text(Component):
    """A text file (UTF-8) for a language model: windows of model.input_shape[0] tokens,
    each step predicting the next token. The vocabulary is every token of the file."""
    type: Literal["text"] = "text"
    first = "path"
    path: str
    tokenizer: Tokenizer = "char"
    lowercase: bool = False
    step: Size | None = None  # tokens between window starts; default: the window length (no overlap)
    max_tokens: Size | None = None  # read only the first N tokens of the file
    _vocab = PrivateAttr(default=None)  # a trained model's vocabulary, when evaluating it


class TextCsv(Component):
    """A CSV file with a header, a text column and a label column, for sequence
    classification. Texts become token ids padded with <PAD> (0) to model.input_shape[0];
    the vocabulary (<PAD>, <UNK>, then tokens by frequency) comes from the train split."""
    type: Literal["text_csv"] = "text_csv"
    first = "path"
    path: str
    text: str = "text"  # column names
    label: str = "label"
    delimiter: str = ","
    tokenizer: Tokenizer = "word"
    lowercase: bool = True
    min_freq: Size = 1
    max_vocab: Size | None = None
    too_long: TooLong = "error"
    _vocab = PrivateAttr(default=None)  # a trained model's vocabulary, when evaluating it


class _Pairs(Component):
    tokenizer: Tokenizer = "word"
    lowercase: bool = False


class Tsv(_Pairs):
    """Sequence pairs for seq2seq, one per line: source, a tab, target."""
    type: Literal["tsv"] = "tsv"
    first = "path"
    path: str


class Parallel(_Pairs):
    """Sequence pairs for seq2seq from two line-aligned files (line i of `source` pairs with
    line i of `target`)."""
    type: Literal["parallel"] = "parallel"
    source: str
    target: str


class SortLetters(Component):
    """The course's synthetic seq2seq task: a random word -> its letters sorted
    (hello -> ehllo). Words are distinct (seeded by the spec's seed), so words in the
    validation and test splits never occur in training."""
    type: Literal["sort_letters"] = "sort_letters"
    first = "samples"
    samples: Size = 10000
    min_length: Size = 3
    max_length: Size = 8
    alphabet: Annotated[str, Field(min_length=2)] = "abcdefghijklmnopqrstuvwxyz"

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) is larger than max_length ({self.max_length})")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError("alphabet repeats letters; list each once")
        return self


TEXT_SOURCES = [Text, TextCsv, Tsv, Parallel, SortLetters]
PAIR_SOURCES = {"tsv", "parallel", "sort_letters"}


class ExactMatch(Component):
    """seq2seq: the share of sequences decoded exactly right (decoder.search, no teacher forcing)."""
    type: Literal["exact_match"] = "exact_match"


class Bleu(Component):
    """seq2seq: corpus BLEU (0-100, up to 4-grams, brevity penalty, no smoothing) of the
    decoded sequences against the targets."""
    type: Literal["bleu"] = "bleu"


SEQUENCE_METRICS = [ExactMatch, Bleu]
