"""Train the digits DCGAN (specs/digits_dcgan.yaml) two ways, each as a whole process,
alternating, and compare.

    /work/venv/bin/python bench/gan_speed.py [--epochs 20] [--reps 4] [--threads N] [--profile]

Both sides do the same work for this spec (train defaults: log_every 10, checkpoint_every 1,
diagnose_every 5, tensorboard graph on, verbosity 0):

    start       data scaled into tanh's range; TensorBoard writer; a grid of 64 real samples
                as an image; the model graph (D(G(z)) traced by SummaryWriter.add_graph);
                the quality classifier (a small CNN of the real digits) read from a cache
                file, trained (15 epochs, seeded) when the cache is empty
    each step   noise -> G -> one D step and one G step (Adam), D frozen for the G step;
                d_loss, g_loss, D(x) and D(G(z)) (sigmoid means) as Python floats
    every 10    their means since the last point as TensorBoard scalars (and at the epoch's end)
    each epoch  the "epoch" scalar; last.pt (G, D, both optimizers, RNG state, epoch, step)
    every 5th   G in eval mode on 64 fixed noise vectors -> grid as a TensorBoard image and a
    and last    PNG file; 1000 fixed samples scored by the classifier -> quality/score
                (Inception-score formula), confidence, classes covered, as scalars;
                best.pt when quality/score improves
    end         metrics.json

1. netspec: netspec.train(netspec.load(spec)) with its defaults (the above; also spec.yaml,
            the classifier copied into the run folder, the collapse check per epoch)
2. twin:    the same written by hand in PyTorch as a user would: the networks from
            netspec.build (same init), the same data, scaling, batch order and noise stream,
            the same optimizers and losses; its own classifier (same architecture and
            training recipe, its 80% training share drawn alike) in its own cache file;
            torch.save and Pillow for files.

Both do identical arithmetic: "same arithmetic" compares the last epoch's mean d_loss (the
classifiers are trained alike too, so quality/* in both metrics.json files agree). The
warm-up runs (1 epoch each, dropped) fill both classifier caches (NETSPEC_CACHE, a temporary
folder), as a user's first run does. Printed: wall and CPU time of each whole process, the
time from reading the spec to the end (imports excluded), min and median, and the ratios
netspec / twin. --profile instead shows where netspec's time goes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_driver  # noqa: E402

SPEC = twin_driver.ROOT / "specs" / "digits_dcgan.yaml"
# the spec's settings (and netspec's train defaults), written out as a user would
SEED, BATCH, LATENT, REAL_TARGET, LR, BETAS = 0, 64, 32, 1.0 - 0.1, 0.001, (0.5, 0.999)
LOG_EVERY, DIAGNOSE_EVERY, EVAL_SAMPLES = 10, 5, 1000


def netspec_way(overrides, out: Path) -> dict:
    return twin_driver.run_netspec(SPEC, overrides, out, "train/d_loss")


def grid(images, columns: int = 8, min_width: int = 320):
    """[N, 1, H, W] in [0, 1] -> [1, H', W']: tiles on a grey 1-pixel grid, enlarged."""
    import torch
    n, c, h, w = images.shape
    rows = -(-n // columns)
    out = torch.full((c, rows * (h + 1) + 1, columns * (w + 1) + 1), 0.5)
    for i in range(n):
        r, k = divmod(i, columns)
        out[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = images[i]
    zoom = max(1, min_width // out.shape[2])
    return out.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)


def save_png(picture, path: Path) -> None:
    from PIL import Image
    px = (picture[0].clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(px).save(path, compress_level=1)


def classifier(x, y, classes: int, cache: Path):
    """A small CNN of the real samples, to score generated ones: from the cache file, else
    trained (seeded, on its own RNG stream) and saved there."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    def make():
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveMaxPool2d(4), nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if cache.is_file():
            net = make()
            net.load_state_dict(torch.load(cache, weights_only=True))
        else:  # trained on 80% of the samples (the rest held out to check it: not needed here)
            train = torch.randperm(len(x))[:int(len(x) * 0.8)]
            net = make()
            opt = torch.optim.Adam(net.parameters(), lr=2e-3)
            for _ in range(15):
                order = train[torch.randperm(len(train))]
                for i in range(0, len(order), 64):
                    idx = order[i:i + 64]
                    loss = F.cross_entropy(net(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), cache)
    return net.eval()


def twin_way(overrides, out: Path) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    import netspec
    from netspec.data import load as load_data
    t0 = time.perf_counter()
    spec = netspec.load(SPEC, overrides)
    assert spec.generator.layers[-1].type == "tanh" and spec.gan.loss == "non_saturating"
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    epochs = spec.train.epochs
    data = load_data(spec)
    x, y = data.splits["train"]
    lo, hi = float(x.min()), float(x.max())

    def to_tanh(v):
        return -1.0 + (v - lo) / (hi - lo) * 2.0

    def pixels(v):  # tanh's range -> [0, 1] for display
        return ((v + 1) / 2).clamp(0, 1)
    x = to_tanh(x)
    nets = netspec.build(spec)  # seeds torch with spec.seed, then initialises: netspec's init
    G, D = nets["generator"], nets["discriminator"]
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    bce = F.binary_cross_entropy_with_logits
    judge = classifier(to_tanh(torch.cat([s[0] for s in data.splits.values()])),
                       torch.cat([s[1] for s in data.splits.values()]), 10,
                       Path(os.environ.get("NETSPEC_CACHE", out / "cache")) / "twin-digits-classifier.pt")
    noise = torch.Generator().manual_seed(SEED + 1)  # fixed noise, apart from training's stream
    show, scored = torch.randn(64, LATENT, generator=noise), torch.randn(EVAL_SAMPLES, LATENT, generator=noise)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    tb = SummaryWriter(str(out), flush_secs=10)
    tb.add_image("real", grid(pixels(x[:64])), 0)
    G.eval(), D.eval()
    tb.add_graph(nn.Sequential(G, D), show[:2])
    steps = len(x) // BATCH  # full batches (batch norm)
    step, best, metrics = 0, None, {}
    tags = ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake")
    for epoch in range(1, epochs + 1):
        G.train()
        D.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED * 100_003 + epoch))
        sums, since = [0.0] * 4, [0.0] * 4
        n_since = 0
        for i in range(steps):
            real = x[order[i * BATCH:(i + 1) * BATCH]]
            fake = G(torch.randn(BATCH, LATENT))
            real_out, fake_out = D(real), D(fake.detach())
            d_loss = bce(real_out, torch.full_like(real_out, REAL_TARGET)) + bce(fake_out, torch.zeros_like(fake_out))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)  # the G step: no D gradients
            g_loss = bce(D(fake), torch.ones_like(fake_out))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            D.requires_grad_(True)
            opt_g.step()
            step += 1
            vals = (d_loss.item(), g_loss.item(), torch.sigmoid(real_out).mean().item(),
                    torch.sigmoid(fake_out).mean().item())
            sums = [a + b for a, b in zip(sums, vals)]
            since = [a + b for a, b in zip(since, vals)]
            n_since += 1
            if step % LOG_EVERY == 0 or i == steps - 1:
                for tag, v in zip(tags, since):
                    tb.add_scalar(tag, v / n_since, step)
                since, n_since = [0.0] * 4, 0
        metrics = {tag: v / steps for tag, v in zip(tags, sums)}
        G.eval(), D.eval()
        tb.add_scalar("epoch", epoch, step)
        is_best = False
        if epoch % DIAGNOSE_EVERY == 0 or epoch == epochs:
            with torch.no_grad():
                picture = grid(pixels(G(show)))
                tb.add_image("samples", picture, step)
                save_png(picture, out / "samples" / f"epoch_{epoch:03d}.png")
                p = judge(G(scored)).softmax(-1)
            pred = p.argmax(-1)
            marginal = p.mean(0, keepdim=True)
            kl = (p * (p.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(-1)
            share = torch.bincount(pred, minlength=10).float() / len(pred)
            quality = {"quality/score": float(kl.mean().exp()), "quality/confidence": float(p.max(-1).values.mean()),
                       "quality/classes": int((share >= 1 / 40).sum())}
            for k, v in quality.items():
                tb.add_scalar(k, v, step)
            metrics.update(quality)
            is_best = best is None or quality["quality/score"] > best
            best = quality["quality/score"] if is_best else best
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), file=sys.stderr)
        tb.flush()
        torch.save({"generator": G.state_dict(), "discriminator": D.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch, "step": step,
                    "metrics": metrics}, out / "checkpoints" / "last.pt")
        if is_best:
            shutil.copyfile(out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt")
    tb.close()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    assert math.isfinite(metrics["train/d_loss"])
    return {"seconds": time.perf_counter() - t0, "check": metrics["train/d_loss"]}


if __name__ == "__main__":
    twin_driver.main("digits DCGAN (specs/digits_dcgan.yaml)", __file__,
                     {"netspec": netspec_way, "twin": twin_way}, 20, 4, __doc__)
