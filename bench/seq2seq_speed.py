"""Train the letter-sorting seq2seq (specs/sort_letters.yaml) two ways, each as a whole
process, alternating, and compare.

    /work/venv/bin/python bench/seq2seq_speed.py [--epochs 3] [--reps 3] [--threads N] [--profile]

Both sides do the same work for this spec (metrics [accuracy, exact_match, bleu], monitor
val/exact_match; train defaults: log_every 10, checkpoint_every 1, diagnose_every 5,
tensorboard graph on, verbosity 0):

    start       pairs, vocabularies, padded id tensors; TensorBoard writer; the model graph
                (a teacher-forced pass traced by SummaryWriter.add_graph)
    each step   teacher-forced forward (packed encoder, state copied into the decoder),
                cross-entropy, backward, gradient clipping, Adam; the loss as a float; the
                step's correct tokens counted from its own logits (train/accuracy)
    every 10    the mean loss since the last point as a TensorBoard scalar (and at the epoch's end)
    each epoch  train/accuracy; the validation split (1,200 pairs, chunks of 512):
                teacher-forced val/loss and val/accuracy, greedy-decoded val/exact_match and
                val/bleu (sacrebleu, character n-grams); 8 of the decoded validation examples
                as a TensorBoard text table; every metric and "epoch" as scalars; last.pt
                (model, optimizer, RNG state, vocabularies, epoch, step); best.pt when
                val/exact_match improves
    every 5th   the first 2,000 training pairs greedy-decoded: train/exact_match, train/bleu
    and last
    end         the best checkpoint's weights (when it is not the last epoch's) on the test
                split: test/loss, accuracy, exact_match, bleu, as scalars; metrics.json

1. netspec: netspec.train(netspec.load(spec)) with its defaults (the above; also spec.yaml)
2. twin:    the same written by hand in PyTorch as a user would: the networks' layers from
            netspec.build (same init) run by a hand-written encoder-decoder forward and
            greedy decoder, the same pairs, vocabularies, batch order, trimming, optimizer
            and clipping; sacrebleu for BLEU; torch.save for checkpoints.

"same arithmetic" compares the last epoch's training loss. Printed: wall and CPU time of each
whole process, the time from reading the spec to the end (imports excluded), min and median,
and the ratios netspec / twin. --profile instead shows where netspec's time goes.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_driver  # noqa: E402

SPEC = twin_driver.ROOT / "specs" / "sort_letters.yaml"
# the spec's settings (and netspec's train defaults), written out
SEED, BATCH, LR, CLIP, MAX_LEN = 0, 128, 0.003, 5.0, 8
LOG_EVERY, DIAGNOSE_EVERY, TRAIN_DECODED, EVAL_CHUNK = 10, 5, 2000, 512


def netspec_way(overrides, out: Path) -> dict:
    return twin_driver.run_netspec(SPEC, overrides, out, "train/loss")


def read_pairs(spec):
    """The spec's pairs and vocabularies as netspec reads them (the data package's reader)."""
    from netspec.data import text
    return text.read_pairs(spec)


def twin_way(overrides, out: Path) -> dict:
    import sacrebleu
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence
    from torch.utils.tensorboard import SummaryWriter

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

    data = {k: (ids(xs, sv), ids(ys, tv, frame=True), ys, xs) for k, (xs, ys) in corpus.splits.items()}
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

    def cut(x):  # a batch cut to its longest sequence
        return x[:, :int((x != PAD).sum(1).max())]

    @torch.no_grad()
    def greedy(src):
        src = cut(src)
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

    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def decoded_scores(src, targets, prefix):
        hyps = [h for i in range(0, len(src), EVAL_CHUNK) for h in greedy(src[i:i + EVAL_CHUNK])]
        bleu = sacrebleu.corpus_bleu(["".join(h) for h in hyps], [["".join(t) for t in targets]], tokenize="char")
        return {f"{prefix}/exact_match": sum(h == t for h, t in zip(hyps, targets)) / len(targets),
                f"{prefix}/bleu": bleu.score}, hyps

    @torch.no_grad()
    def evaluate(split):  # teacher-forced loss and accuracy, then decoded scores
        src, tgt, targets, _ = data[split]
        model.eval()
        total = right = count = 0
        for i in range(0, len(src), EVAL_CHUNK):
            s, t = cut(src[i:i + EVAL_CHUNK]), cut(tgt[i:i + EVAL_CHUNK])
            logits, y = forward(s, t), t[:, 1:]
            real = y != PAD
            n = int(real.sum())
            total += float(loss_fn(logits.flatten(0, 1), y.flatten())) * n
            right += int(((logits.argmax(-1) == y) & real).sum())
            count += n
        scores, hyps = decoded_scores(src, targets, split)
        return {f"{split}/loss": total / count, f"{split}/accuracy": right / count, **scores}, hyps

    class Graphable(nn.Module):  # the model as one module of the source, for add_graph
        def __init__(self):
            super().__init__()
            self.model = model  # registered, so the tracer sees its weights as parameters

        def forward(self, src):
            return forward(src, torch.full((src.shape[0], 2), GO))

    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    tb = SummaryWriter(str(out), flush_secs=10)
    src_all, tgt_all, train_targets, _ = data["train"]
    model.eval()
    tb.add_graph(Graphable(), src_all[:2])
    n = len(src_all)
    step, best, best_epoch, metrics = 0, None, 0, {}
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 100_003 + epoch))
        run_loss, since, n_since, right, tokens = 0.0, 0.0, 0, [], []
        for b in range(0, n, BATCH):
            idx = order[b:b + BATCH]
            src, tgt = cut(src_all[idx]), cut(tgt_all[idx])
            logits, y = forward(src, tgt).reshape(-1, len(tv)), tgt[:, 1:].reshape(-1)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            with torch.no_grad():
                real = y != PAD
                right.append(((logits.argmax(-1) == y) & real).sum())
                tokens.append(real.sum())
            value = loss.item()
            run_loss += value * len(idx)
            since, n_since, step = since + value, n_since + 1, step + 1
            if step % LOG_EVERY == 0 or b + BATCH >= n:
                tb.add_scalar("train/loss", since / n_since, step)
                since, n_since = 0.0, 0
        metrics = {"train/loss": run_loss / n, "train/accuracy": int(sum(right)) / int(sum(tokens))}
        if epoch % DIAGNOSE_EVERY == 0 or epoch == epochs:
            model.eval()
            metrics.update(decoded_scores(src_all[:TRAIN_DECODED], train_targets[:TRAIN_DECODED], "train")[0])
        val, hyps = evaluate("val")
        metrics.update(val)
        _, _, vt, vs = data["val"]
        table = ["| source | decoded | target |", "|---|---|---|"] + [
            f"| {''.join(s)} | {''.join(h) or ' '} | {''.join(t)} |" for s, h, t in zip(vs[:8], hyps[:8], vt[:8])]
        tb.add_text("samples", "\n".join(table), step)
        for k, v in metrics.items():
            if k != "train/loss":  # its curve is the per-step one
                tb.add_scalar(k, v, step)
        tb.add_scalar("epoch", epoch, step)
        is_best = best is None or metrics["val/exact_match"] > best
        if is_best:
            best, best_epoch = metrics["val/exact_match"], epoch
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), file=sys.stderr)
        tb.flush()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                    "epoch": epoch, "step": step, "metrics": metrics, "source_vocab": sv, "target_vocab": tv},
                   out / "checkpoints" / "last.pt")
        if is_best:
            shutil.copyfile(out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt")
    check = metrics["train/loss"]
    if best_epoch != epochs:  # test the best weights
        model.load_state_dict(torch.load(out / "checkpoints" / "best.pt", weights_only=True)["model"])
    test, _ = evaluate("test")
    for k, v in test.items():
        tb.add_scalar(k, v, step)
    metrics.update(test)
    tb.close()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"seconds": time.perf_counter() - t0, "check": check}


if __name__ == "__main__":
    twin_driver.main("letter-sorting seq2seq (specs/sort_letters.yaml)", __file__,
                     {"netspec": netspec_way, "twin": twin_way}, 3, 3, __doc__, warmup=False)
