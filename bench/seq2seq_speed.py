"""Train the letter-sorting seq2seq (specs/sort_letters.yaml) two ways, each as a whole
process, alternating, and compare.

    /work/venv/bin/python bench/seq2seq_speed.py [--epochs 3] [--reps 3] [--threads N] [--profile]

1. netspec: netspec.train(netspec.load(spec)) with its defaults (TensorBoard, per-epoch
            metrics incl. decoded exact match and BLEU, decoded examples, checkpoints,
            the test split at the end, metrics.json)
2. twin:    a hand-written PyTorch loop doing the same training with reasonable monitoring:
            the networks' layers from netspec.build (same init) run by a hand-written
            encoder-decoder forward (packed encoder, state copied into the decoder, teacher
            forcing), the same pairs, vocabularies, batch order, trimming, optimizer and
            gradient clipping; per epoch the training loss and the validation loss; 8
            greedy-decoded validation examples every EXAMPLES_EVERY epochs and at the end;
            one checkpoint and the test split's exact match (greedy) at the end.

"same arithmetic" compares the last epoch's training loss. Printed: wall and CPU time of each
whole process, the time from reading the spec to the end (imports excluded), min and median,
and the ratios netspec / twin. --profile instead shows where netspec's time goes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_driver  # noqa: E402

SPEC = twin_driver.ROOT / "specs" / "sort_letters.yaml"
SEED, BATCH, LR, CLIP, MAX_LEN = 0, 128, 0.003, 5.0, 8  # the spec's settings, written out
EXAMPLES_EVERY = 5  # epochs between printed decoded examples


def netspec_way(overrides, out: Path) -> dict:
    return twin_driver.run_netspec(SPEC, overrides, out, "train/loss")


def read_pairs(spec):
    """The spec's pairs and vocabularies as netspec reads them (the data package's reader)."""
    from netspec.data import text
    return text.read_pairs(spec)


def twin_way(overrides, out: Path) -> dict:
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    import netspec
    t0 = time.perf_counter()
    spec = netspec.load(SPEC, overrides)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    epochs = spec.train.epochs
    corpus = read_pairs(spec)
    sv, tv = corpus.source_vocab, corpus.target_vocab
    PAD, GO, EOS, UNK = (tv.index(t) for t in ("<PAD>", "<GO>", "<EOS>", "<UNK>"))

    def ids(seqs, vocab, frame=False):
        index = {t: i for i, t in enumerate(vocab)}
        rows = [[index.get(t, UNK) for t in s] for s in seqs]
        if frame:
            rows = [[GO, *r, EOS] for r in rows]
        x = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r)
        return x

    data = {k: (ids(xs, sv), ids(ys, tv, frame=True), ys) for k, (xs, ys) in corpus.splits.items()}
    model = netspec.build(spec)  # seeds torch with spec.seed, then initialises: netspec's init
    enc_emb, enc_rnn = [m for m in model["encoder"].modules() if isinstance(m, (nn.Embedding, nn.LSTM))]
    dec_emb, dec_rnn, proj = [m for m in model["decoder"].modules()
                              if isinstance(m, (nn.Embedding, nn.LSTM, nn.Linear))]

    def encode(src):  # the encoder's final (h, c): packed, so padding changes nothing
        lengths = (src != PAD).sum(1).clamp_min(1)
        _, state = enc_rnn(pack_padded_sequence(enc_emb(src), lengths, batch_first=True, enforce_sorted=False))
        return state

    def forward(src, tgt):  # teacher forcing: <GO> y[:-1] in, logits for y <EOS>
        out, _ = dec_rnn(dec_emb(tgt[:, :-1]), encode(src))
        return proj(out)

    @torch.no_grad()
    def greedy(src):
        state, tok = encode(src), torch.full((len(src),), GO)
        done, outs = torch.zeros(len(src), dtype=torch.bool), []
        for _ in range(MAX_LEN + 1):
            h, state = dec_rnn(dec_emb(tok[:, None]), state)
            logits = proj(h[:, -1])
            logits[:, [PAD, GO]] = float("-inf")
            tok = logits.argmax(-1).masked_fill(done, PAD)
            outs.append(tok)
            done |= tok == EOS
            if done.all():
                break
        rows = torch.stack(outs, 1).tolist()
        return [[tv[t] for t in (r[:r.index(EOS)] if EOS in r else r)] for r in rows]

    def cut(x):  # a batch cut to its longest sequence
        return x[:, :int((x != PAD).sum(1).max())]

    def trim(src, tgt):
        return cut(src), cut(tgt)

    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    @torch.no_grad()
    def val_loss(src, tgt):
        model.eval()
        total = count = 0
        for i in range(0, len(src), BATCH * 4):
            s, t = trim(src[i:i + BATCH * 4], tgt[i:i + BATCH * 4])
            n = int((t[:, 1:] != PAD).sum())
            total += float(loss_fn(forward(s, t).flatten(0, 1), t[:, 1:].flatten())) * n
            count += n
        return total / count

    src_all, tgt_all, _ = data["train"]
    n = len(src_all)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 100_003 + epoch))
        run_loss = 0.0
        for b in range(0, n, BATCH):
            idx = order[b:b + BATCH]
            src, tgt = trim(src_all[idx], tgt_all[idx])
            loss = loss_fn(forward(src, tgt).reshape(-1, len(tv)), tgt[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            run_loss += loss.item() * len(idx)
        print(f"epoch {epoch}: loss {run_loss / n:.4f} val_loss {val_loss(*data['val'][:2]):.4f}", file=sys.stderr)
        if epoch % EXAMPLES_EVERY == 0 or epoch == epochs:
            vs, _, vt = data["val"]
            for hyp, want in zip(greedy(cut(vs[:8])), vt[:8]):
                print(f"  {''.join(hyp):<10} want {''.join(want)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epochs,
                "source_vocab": sv, "target_vocab": tv}, out / "checkpoint.pt")
    ts, _, tt = data["test"]
    hyps = [h for i in range(0, len(ts), BATCH * 4) for h in greedy(cut(ts[i:i + BATCH * 4]))]
    print(f"test exact match {sum(h == t for h, t in zip(hyps, tt)) / len(tt):.4f}", file=sys.stderr)
    return {"seconds": time.perf_counter() - t0, "check": run_loss / n}


if __name__ == "__main__":
    twin_driver.main("letter-sorting seq2seq (specs/sort_letters.yaml)", __file__,
                     {"netspec": netspec_way, "twin": twin_way}, 3, 3, __doc__, warmup=False)
