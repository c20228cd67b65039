"""Decoding a seq2seq model, whatever its decoder: greedy and beam search over a step
function `step(tokens [N], state) -> (log-probabilities [N, V], state)`. A state is a
recurrent decoder's (h[, c]) or a transformer decoder's key/value cache (`Incremental`)."""
from __future__ import annotations

import torch

PAD_ID, GO_ID, EOS_ID = 0, 1, 2  # the order of text.SEQ2SEQ_SPECIALS


def reorder(state, rows):
    """A decoder state with its batch rows picked (beam search follows its hypotheses)."""
    if state is None:
        return None
    if hasattr(state, "reorder"):  # a transformer's key/value cache
        return state.reorder(rows)
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


def next_log_probs(logits):
    """The last position's logits [N, T, V] -> log-probabilities [N, V]; <PAD> and <GO> are never outputs."""
    last = logits[:, -1].float()
    last[:, [PAD_ID, GO_ID]] = float("-inf")
    return torch.log_softmax(last, -1)


def stepper(decoder, memory):
    """step(tokens [N], state) -> (log-probabilities [N, V], state)."""
    def step(tokens, state):
        logits, state = decoder(tokens[:, None], state, memory)
        return next_log_probs(logits), state
    return step


def cut(row: list[int]) -> list[int]:
    return row[:row.index(EOS_ID)] if EOS_ID in row else row


def greedy(step, state, batch: int, max_length: int, device=None) -> list[list[int]]:
    tok = torch.full((batch,), GO_ID, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out = []
    for _ in range(max_length + 1):  # max_length tokens, then <EOS>
        logp, state = step(tok, state)
        tok = logp.argmax(-1).masked_fill(done, PAD_ID)
        out.append(tok)
        done = done | (tok == EOS_ID)
        if bool(done.all()):
            break
    return [cut(r)[:max_length] for r in torch.stack(out, 1).tolist()]


def beam_search(step, state, batch: int, width: int, max_length: int, length_penalty: float = 0.0,
                device=None) -> list[list[int]]:
    """Keep the `width` most likely hypotheses of each sample (rows b*width .. b*width+width-1
    of `state`). A hypothesis that emitted <EOS> stays in the beam with its score frozen (it
    can only be extended by <PAD>, at no cost), competing with the live ones. The result is
    the best by log-probability / ((5 + length) / 6) ** length_penalty."""
    k = width
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand one
    tok = torch.full((batch * k,), GO_ID, dtype=torch.long, device=device)
    seqs = torch.zeros((batch * k, 0), dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    frozen = None
    for _ in range(max_length + 1):
        logp, state = step(tok, state)
        V = logp.shape[-1]
        if frozen is None:
            frozen = torch.full((V,), float("-inf"), device=logp.device)
            frozen[PAD_ID] = 0.0
        logp = torch.where(finished[:, None], frozen, logp)
        scores, pick = (scores.reshape(-1, 1) + logp).reshape(batch, k * V).topk(k, -1)
        rows = (torch.arange(batch, device=logp.device)[:, None] * k + pick // V).reshape(-1)
        tok = (pick % V).reshape(-1)
        state = reorder(state, rows)
        seqs = torch.cat([seqs[rows], tok[:, None]], 1)
        finished = finished[rows] | (tok == EOS_ID)
        if bool(finished.all()):
            break
    is_eos = seqs == EOS_ID
    lengths = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.tensor(seqs.shape[1]))
    norm = scores.reshape(-1) / ((5 + lengths.float()) / 6) ** length_penalty
    best = norm.reshape(batch, k).argmax(-1)
    picked = seqs.reshape(batch, k, -1)[torch.arange(batch), best]
    return [cut(r)[:max_length] for r in picked.tolist()]
