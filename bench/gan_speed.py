"""Train the digits DCGAN (specs/digits_dcgan.yaml) two ways, each as a whole process,
alternating, and compare.

    /work/venv/bin/python bench/gan_speed.py [--epochs 20] [--reps 4] [--threads N] [--profile]

1. netspec: netspec.train(netspec.load(spec)) with its defaults (TensorBoard, sample grid,
            quality scores, checkpoints, metrics.json)
2. twin:    a hand-written PyTorch loop doing the same training with reasonable monitoring:
            the networks from netspec.build (same init), the same data, scaling, batch order
            and noise stream, the same optimizers and losses; the epoch's mean losses printed,
            a PNG grid of 64 fixed-noise samples every GRID_EVERY epochs and at the end
            (Pillow), one checkpoint at the end.

Both do identical arithmetic while netspec's loop draws its noise and orders its batches as
below: "same arithmetic" compares the last epoch's mean d_loss. The warm-up run fills
netspec's quality-classifier cache (NETSPEC_CACHE, a temporary folder), as a user's first run does. Printed: wall and CPU time of
each whole process, the time from reading the spec to the end (imports excluded), min and
median, and the ratios netspec / twin. --profile instead shows where netspec's time goes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_driver  # noqa: E402

SPEC = twin_driver.ROOT / "specs" / "digits_dcgan.yaml"
# the spec's settings, written out as a user would
SEED, BATCH, LATENT, REAL_TARGET, LR, BETAS = 0, 64, 32, 1.0 - 0.1, 0.001, (0.5, 0.999)
GRID_EVERY = 10  # epochs between sample grids


def netspec_way(overrides, out: Path) -> dict:
    return twin_driver.run_netspec(SPEC, overrides, out, "train/d_loss")


def save_grid(images, path: Path, columns: int = 8, zoom: int = 4) -> None:
    """[N, 1, H, W] in [-1, 1] -> one PNG: tiles on a grey 1-pixel grid, enlarged."""
    import numpy as np
    from PIL import Image
    px = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    n, h, w = px.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1), 128, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = px[i]
    img = Image.fromarray(canvas)
    img.resize((img.width * zoom, img.height * zoom), Image.NEAREST).save(path)


def twin_way(overrides, out: Path) -> dict:
    import torch
    import torch.nn.functional as F

    import netspec
    from netspec.data import load as load_data
    t0 = time.perf_counter()
    spec = netspec.load(SPEC, overrides)
    assert spec.generator.layers[-1].type == "tanh" and spec.gan.loss == "non_saturating"
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    epochs = spec.train.epochs
    x = load_data(spec).splits["train"][0]
    lo, hi = float(x.min()), float(x.max())
    x = -1.0 + (x - lo) / (hi - lo) * 2.0  # into tanh's range
    nets = netspec.build(spec)  # seeds torch with spec.seed, then initialises: netspec's init
    G, D = nets["generator"], nets["discriminator"]
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    bce = F.binary_cross_entropy_with_logits
    fixed = torch.randn(64, LATENT, generator=torch.Generator().manual_seed(SEED + 1))
    out.mkdir(parents=True, exist_ok=True)
    steps = len(x) // BATCH  # full batches (batch norm)
    for epoch in range(1, epochs + 1):
        G.train()
        D.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED * 100_003 + epoch))
        d_sum = g_sum = 0.0
        for i in range(steps):
            real = x[order[i * BATCH:(i + 1) * BATCH]]
            fake = G(torch.randn(BATCH, LATENT))
            real_out, fake_out = D(real), D(fake.detach())
            d_loss = bce(real_out, torch.full_like(real_out, REAL_TARGET)) + bce(fake_out, torch.zeros_like(fake_out))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)  # the G step: no D gradients
            fake_out = D(fake)
            g_loss = bce(fake_out, torch.ones_like(fake_out))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            D.requires_grad_(True)
            opt_g.step()
            d_sum += d_loss.item()
            g_sum += g_loss.item()
        print(f"epoch {epoch}: d_loss {d_sum / steps:.4f} g_loss {g_sum / steps:.4f}", file=sys.stderr)
        if epoch % GRID_EVERY == 0 or epoch == epochs:
            G.eval()
            with torch.no_grad():
                save_grid(G(fixed), out / f"samples_{epoch:03d}.png")
    torch.save({"generator": G.state_dict(), "discriminator": D.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "epoch": epochs}, out / "checkpoint.pt")
    return {"seconds": time.perf_counter() - t0, "check": d_sum / steps}


if __name__ == "__main__":
    twin_driver.main("digits DCGAN (specs/digits_dcgan.yaml)", __file__,
                     {"netspec": netspec_way, "twin": twin_way}, 20, 4, __doc__,
                     note="\n    (a warm quality-classifier cache shifts netspec's random stream: the classifier "
                          "is built outside its forked RNG; with a cold cache both match)")
