"""The GAN loop: a generator G turns noise z into samples, a discriminator D scores real
against generated samples, and the two are updated in turn.

    for epoch: shuffle (seeded per epoch) -> for each batch of real x:
        z ~ noise; fake = G(z)
        D step: d_loss = loss(D(x), real target) + loss(D(fake), 0)   (G untouched)
        every d_steps D steps, G step: g_loss pushes D(G(z)) toward "real"   (D frozen)
    -> render a fixed noise batch (TensorBoard image + PNG) -> score samples with a small
       classifier of the real data (quality/*) -> checkpoint both networks and optimizers

A conditional GAN feeds the one-hot class label to both networks: appended to z, and
to the discriminator's input as extra channels (or extra features for flat data).
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import data as D
from ..compiler import check_size, compile_network, materialize
from ..errors import Problem, RunError, SpecError, suggest
from ..spec import layers as L
from . import compile_spec
from .base import Kind
from .scale import Scale, output_range

EVAL_SAMPLES = 1000  # generated samples scored by the quality classifier each epoch
COLLAPSE_EPOCHS = 3  # epochs of a discriminator at its loss floor before warning
TAGS = ["train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"]
QUALITY = ["quality/score", "quality/confidence", "quality/classes", "quality/label_accuracy"]


# --- shapes: both networks, checked against each other and the data at their lines ---
KEEP_SHAPE = {c.tag() for c in L.ACTIVATIONS} | {"batch_norm", "layer_norm", "dropout", "dropout2d"}


def _last(network, name: str, shaping: bool = False) -> tuple:
    """Path of a network's last layer (shaping: the last one that can change the shape)."""
    i = len(network.layers) - 1
    while shaping and i > 0 and network.layers[i].type in KEEP_SHAPE:
        i -= 1
    return (name, "layers", i, network.layers[i].type)


def compile(spec, ctx: dict) -> dict:
    """Generator (input: latent [+ one-hot label]) and discriminator (input: a sample
    [+ label channels]) on the meta device. ctx may carry the data's sample shape and
    class count (at train time), checked here so a mismatch names its line."""
    problems: list[Problem] = []
    g = spec.gan
    if g.conditional and g.classes is None:
        problems.append(spec.problem(("gan", "conditional"), "conditional: true needs 'classes: N' beside "
                                                             "it, the number of class labels (10 for digits)"))
    elif not g.conditional and g.classes is not None:
        problems.append(spec.problem(("gan", "classes"), "'classes' is read only by a conditional GAN: add "
                                                         "'conditional: true' or remove it"))
    extra = (g.classes or 0) if g.conditional else 0
    gen_net, disc_net = spec.generator, spec.discriminator
    if gen_net.input_shape is not None:
        problems.append(spec.problem(("generator", "input_shape"),
                                     "the generator reads the latent vector: its input is set by "
                                     "'latent: {size: N}'; remove generator.input_shape"))
    if gen_net.input_dtype != "float":
        problems.append(spec.problem(("generator", "input_dtype"), "the generator reads a float noise "
                                                                   "vector; remove input_dtype"))
    gen = None
    if gen_net.input_dtype == "float":
        gen = compile_network(spec, gen_net, ("generator",), problems, ctx,
                              input_shape=(spec.latent.size + extra,))
    data_shape = ctx.get("data_shape")
    d_in = tuple(disc_net.input_shape) if disc_net.input_shape else None
    if gen is not None and data_shape is not None and gen.output_shape != tuple(data_shape):
        problems.append(spec.problem(_last(gen_net, "generator", shaping=True),
                                     f"the generator outputs {list(gen.output_shape)} but the data's samples "
                                     f"are {list(data_shape)}; change its last layers to produce "
                                     f"{list(data_shape)}"))
    elif gen is not None and d_in is not None and gen.output_shape != d_in:
        problems.append(spec.problem(("discriminator", "input_shape"),
                                     f"the discriminator reads {list(d_in)} but the generator outputs "
                                     f"{list(gen.output_shape)}; fix one (or drop discriminator.input_shape: "
                                     "it defaults to the generator's output)"))
    if d_in is not None and data_shape is not None and d_in != tuple(data_shape):
        problems.append(spec.problem(("discriminator", "input_shape"),
                                     f"the discriminator reads {list(d_in)} but the data's samples are "
                                     f"{list(data_shape)}"))
    sample = d_in or (gen.output_shape if gen is not None else None)
    disc = None
    if extra and sample is not None and len(sample) not in (1, 3):
        problems.append(spec.problem(("gan", "conditional"),
                                     f"a conditional GAN feeds the label as extra channels of [C, H, W] "
                                     f"samples or extra features of flat ones; samples {list(sample)} are neither"))
    elif sample is not None:
        disc = compile_network(spec, disc_net, ("discriminator",), problems, ctx,
                               input_shape=(sample[0] + extra, *sample[1:]))
    if disc is not None:
        last = _last(disc_net, "discriminator")
        if disc.output_shape != (1,):
            problems.append(spec.problem(last, f"the discriminator must end in one logit per sample (output "
                                               f"[1]), but it outputs {list(disc.output_shape)}; end it with "
                                               "'linear: 1' (after a flatten)"))
        elif disc.rows[-1].type in ("sigmoid", "softmax", "log_softmax") and g.loss != "least_squares":
            problems.append(spec.problem(last, f"the discriminator ends in {disc.rows[-1].type}, but gan.loss "
                                               f"{g.loss} reads logits (sigmoid cross-entropy with logits, "
                                               "which is numerically stable); remove it"))
    classes = ctx.get("num_classes")
    if g.conditional and ctx.get("data_shape") is not None and not classes:
        problems.append(spec.problem(("gan", "conditional"), "a conditional GAN needs class labels, and "
                                                             "this data has none"))
    elif extra and classes and classes != g.classes:
        problems.append(spec.problem(("gan", "classes"), f"the data has {classes} classes, not {g.classes}; "
                                                         f"set classes: {classes}"))
    for c, name in ((gen, "generator"), (disc, "discriminator")):
        if c is not None:
            check_size(spec, c, (name,), problems)
    if problems:
        raise SpecError(problems)
    return {"generator": gen, "discriminator": disc}


# --- the pair of networks ---
class Gan(nn.Module):
    """G and D, with the label plumbing of a conditional GAN in one place."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent, classes: int | None):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent, self.classes = latent, classes

    def noise(self, n: int, gen: torch.Generator | None = None, device=None) -> torch.Tensor:
        shape = (n, self.latent.size)
        if self.latent.distribution == "uniform":
            return torch.rand(shape, generator=gen, device=device) * 2 - 1
        return torch.randn(shape, generator=gen, device=device)

    def generate(self, z, y=None):
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).to(z.dtype)], 1)
        return self.generator(z)

    def score(self, x, y=None):
        if self.classes:
            h = F.one_hot(y, self.classes).to(x.dtype)
            h = h.view(*h.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, h], 1)
        return self.discriminator(x)

    def forward(self, z, y=None):
        """D(G(z)); a conditional GAN without labels asks for every class in turn."""
        if self.classes and y is None:
            y = torch.arange(z.shape[0], device=z.device) % self.classes
        return self.score(self.generate(z, y), y)


class Losses:
    """The notes' losses: d_loss = d_loss_real + d_loss_fake; g_loss per gan.loss."""

    def __init__(self, settings):
        self.kind = settings.loss
        self.real = 1.0 - settings.label_smoothing  # one-sided: only real targets are smoothed

    def d(self, real_out, fake_out):
        if self.kind == "least_squares":
            return 0.5 * ((real_out - self.real) ** 2).mean() + 0.5 * (fake_out ** 2).mean()
        bce = F.binary_cross_entropy_with_logits
        return bce(real_out, torch.full_like(real_out, self.real)) + bce(fake_out, torch.zeros_like(fake_out))

    def g(self, fake_out):
        if self.kind == "least_squares":
            return 0.5 * ((fake_out - 1) ** 2).mean()
        if self.kind == "standard":  # minimax: minimise log(1 - D(G(z))); its gradient vanishes when D wins
            return -F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
        return F.binary_cross_entropy_with_logits(fake_out, torch.ones_like(fake_out))

    def prob(self, out):
        """What D says, as logged: a probability of "real" (least squares: its raw score)."""
        return out if self.kind == "least_squares" else torch.sigmoid(out)

    @property
    def floor(self) -> float:
        """The lowest d_loss a perfect discriminator reaches (label smoothing keeps it above 0)."""
        t = self.real
        if self.kind == "least_squares" or t >= 1:
            return 0.0
        return -(t * math.log(t) + (1 - t) * math.log(1 - t))


def d_step(gan: Gan, losses: Losses, real, fake, labels, engine):
    """One discriminator update; `fake` is detached so the generator is not touched."""
    with engine.cast:
        real_out, fake_out = gan.score(real, labels), gan.score(fake.detach(), labels)
        loss = losses.d(real_out, fake_out)
    engine.update(loss, "discriminator")
    return loss.item(), losses.prob(real_out).mean().item(), losses.prob(fake_out).mean().item()


def g_step(gan: Gan, losses: Losses, fake, labels, engine):
    """One generator update through a frozen discriminator."""
    gan.discriminator.requires_grad_(False)  # no D gradients to compute, none to leak
    try:
        with engine.cast:
            loss = losses.g(gan.score(fake, labels))
        engine.update(loss, "generator")
    finally:
        gan.discriminator.requires_grad_(True)
    return loss.item()


# --- data scaling (kinds/scale.py) and what build notes about it ---
def notes(spec, nets: dict) -> list[str]:
    """What `netspec build` says beside the summary: an unbounded generator, whose samples
    the data is not scaled to (a spec may mean it, so it is a note, not an error)."""
    gen = nets["generator"]
    if output_range(gen) is not None:
        return []
    return [f"the generator's output is unbounded (it ends in generator.{gen.rows[-1].name}, with no tanh or "
            "sigmoid before it but reshape/flatten/dropout-like layers), so real samples are used unscaled, "
            "in their own range; end the generator with tanh or sigmoid to have the data scaled to "
            "[-1, 1] or [0, 1]"]


# --- images: a grid of samples, as a TensorBoard image and a PNG file ---
def is_image(shape) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))


def grid(images: torch.Tensor, columns: int, min_width: int = 320) -> torch.Tensor:
    """[N, C, H, W] (or [N, H, W]) in [0, 1] -> one [C, H', W'] image: tiles on a grey
    1-pixel grid, enlarged by a whole factor so small samples (8x8 digits) stay visible."""
    if images.dim() == 3:
        images = images[:, None]
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    out = torch.full((c, rows * (h + 1) + 1, columns * (w + 1) + 1), 0.5)
    for i in range(n):
        r, k = divmod(i, columns)
        out[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = images[i]
    zoom = max(1, min_width // out.shape[2])
    return out.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)


def write_png(path: Path, image: torch.Tensor) -> None:
    """A [C, H, W] image in [0, 1] (C = 1 grey, 3 colour) as an 8-bit PNG through Pillow,
    written atomically (a viewer never sees half a picture). zlib level 1: a grid is a few
    KB either way, and level 9 cost more than the step it illustrates."""
    from PIL import Image
    px = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(px[:, :, 0] if px.shape[2] == 1 else px)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    picture.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


# --- quality: a small classifier of the real data scores generated samples ---
def _judge_net(shape, classes: int) -> nn.Module:
    if len(shape) == 3:
        return nn.Sequential(nn.Conv2d(shape[0], 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4),
                             nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, classes))


def train_judge(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int = 15) -> tuple[nn.Module, dict]:
    """Train the classifier on real samples (in generator space), seeded and apart from the
    run's random streams; returns it and its held-out accuracy and confidence."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)  # (the network too: building it draws its initial weights)
        perm = torch.randperm(len(x))
        cut = int(len(x) * 0.8)
        tr, ho = perm[:cut], perm[cut:]
        net = _judge_net(tuple(x.shape[1:]), classes)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        net.train()
        for _ in range(epochs):
            order = tr[torch.randperm(len(tr))]
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    with torch.no_grad():
        p = net(x[ho]).softmax(-1)
    return net, {"quality/classifier_accuracy": float((p.argmax(-1) == y[ho]).float().mean()),
                 "quality/real_confidence": float(p.max(-1).values.mean()),
                 "quality/real_score": _is_score(p)}


def _is_score(p: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))): the Inception Score's formula with this classifier. 1 when
    every sample looks alike (or like nothing), the number of classes at best."""
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(-1)
    return float(kl.mean().exp())


@torch.no_grad()
def quality(judge: nn.Module, samples: torch.Tensor, labels: torch.Tensor | None, classes: int) -> dict:
    """Mean confidence, classes covered (each getting at least a quarter of its fair share,
    1/(4*classes), of the samples: fewer means mode collapse) and the score."""
    p = judge(samples).softmax(-1)
    pred = p.argmax(-1)
    share = torch.bincount(pred, minlength=classes).float() / len(pred)
    out = {"quality/score": _is_score(p), "quality/confidence": float(p.max(-1).values.mean()),
           "quality/classes": int((share >= 1 / (4 * classes)).sum())}
    if labels is not None:
        out["quality/label_accuracy"] = float((pred == labels).float().mean())
    return out


def _cache_dir() -> Path:
    base = os.environ.get("NETSPEC_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netspec"
    return Path(base)


def judge_for(folder: Path | None, x, y, classes):
    """The classifier for this data: from the run folder, else from the user cache (keyed by
    the data itself), else trained now (seconds) and kept in both. An unreadable cache file
    is trained again and replaced. Everything here draws from its own seeded stream, so a
    run's metrics never depend on what the cache holds."""
    key = hashlib.sha256(b"judge-1" + str((list(x.shape), classes)).encode() + x.numpy().tobytes()
                         + y.numpy().tobytes()).hexdigest()[:20]
    places = ([folder / "checkpoints" / "quality.pt"] if folder is not None else []) + \
        [_cache_dir() / f"quality-{key}.pt"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net, m, found = _judge_net(tuple(x.shape[1:]), classes), None, set()
        for f in places:
            s = _read_judge(f, key)
            if s is not None:
                try:
                    net.load_state_dict(s["model"])
                    m = s["metrics"]
                    found.add(f)
                    break
                except (RuntimeError, KeyError, TypeError):
                    continue
        if m is None:
            net, m = train_judge(x, y, classes)
    for f in places:
        if f not in found:
            _write_judge(f, {"model": net.state_dict(), "metrics": m, "key": key})
    return net.eval(), m


def _read_judge(f: Path, key: str) -> dict | None:
    if not f.is_file():
        return None
    try:
        s = torch.load(f, map_location="cpu", weights_only=True)
    except Exception:  # corrupt or foreign: trained again
        return None
    return s if isinstance(s, dict) and s.get("key") == key else None


def _write_judge(f: Path, state: dict) -> None:
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, f)
    except OSError:  # a read-only or full cache only costs time
        pass


# --- checks on the rest of the spec, before any data is touched ---
def check(spec) -> None:
    tr, problems = spec.train, []
    if spec.data is None:
        problems.append(spec.problem(("data",), "'data' is required to train: e.g. 'data: {source: digits}'"))
    if spec.optimizer is None:
        problems.append(spec.problem(("optimizer",), "'optimizer' is required to train: e.g. 'optimizer: "
                                                     "{generator: {adam: {lr: 0.0002, betas: [0.5, 0.999]}}, "
                                                     "discriminator: {adam: {lr: 0.0002, betas: [0.5, 0.999]}}}'"))
    if tr.metrics:
        problems.append(spec.problem(("train", "metrics"), "a GAN logs its own metrics (" + ", ".join(TAGS)
                                     + " and quality/*); remove train.metrics"))
    if problems:
        raise SpecError(problems)


def produced_tags(spec, labelled: bool = True) -> list[str]:
    """The metric tags a run writes (quality/* only for data with class labels)."""
    return TAGS + ([q for q in QUALITY if spec.gan.conditional or q != "quality/label_accuracy"]
                   if labelled else [])


def check_monitor(spec, labelled: bool = True) -> str | None:
    """The monitored tag (best.pt, early stopping): train.monitor if set, else quality/score
    when the data has class labels to judge samples by, else none (best is last). Sweeps
    check before loading data, assuming labels; the run checks again with the data."""
    tr = spec.train
    tags = produced_tags(spec, labelled)
    why = "" if labelled else " (quality/* needs class labels, and this data has none)"
    problems = []
    # val/loss is Train's default, which a GAN never writes: a run folder's spec.yaml (every
    # default written out) says it without the user having asked for it
    asked = "monitor" in tr.model_fields_set and tr.monitor != type(tr).model_fields["monitor"].default
    tag = tr.monitor if asked else ("quality/score" if labelled else None)
    if tag is not None and tag not in tags:
        problems.append(spec.problem(("train", "monitor"), f"'{tag}' is not a metric this GAN run writes"
                                                           f"{why}{suggest(tag, tags)}"))
    es = tr.early_stopping
    if es and (es.monitor or tag) is None:
        problems.append(spec.problem(("train", "early_stopping"), "say what to watch: set "
                                                                  "early_stopping.monitor (e.g. train/g_loss)"))
    elif es and es.monitor and es.monitor not in tags:
        problems.append(spec.problem(("train", "early_stopping", "monitor"), f"'{es.monitor}' is not a metric "
                                                                             f"this GAN run writes{why}"
                                                                             f"{suggest(es.monitor, tags)}"))
    if problems:
        raise SpecError(problems)
    return tag


def fixed_noise(spec, gan: Gan, device=None):
    """The noise shown each epoch (8 rows; conditional: one column per class) and the larger
    set scored for quality: the same every epoch, drawn from their own seed so they do not
    touch the training's random stream."""
    g = spec.gan
    gen = torch.Generator().manual_seed(spec.seed + 1)
    columns = g.classes if g.conditional else 8
    out = []
    for n in (8 * columns, EVAL_SAMPLES):
        z = gan.noise(n, gen).to(device)
        out.append((z, torch.arange(n, device=device) % g.classes if g.conditional else None))
    return columns, out[0], out[1]


# --- training ---
class GAN(Kind):
    """`kind: gan`: per batch, a discriminator update on real and generated samples, then
    (every d_steps batches) a generator update through the frozen discriminator."""
    drop_last = True  # batch norm wants like-sized batches

    def check(self) -> str | None:
        check(self.spec)
        return check_monitor(self.spec, True)  # assuming labels; setup checks again with the data

    def tags(self) -> list[str]:
        return produced_tags(self.spec)

    def setup(self, engine) -> None:
        spec, device, g = self.spec, engine.device, self.spec.gan
        data = self.data = D.load(spec)
        nets = compile_spec(spec, data_shape=data.sample_shape, num_classes=data.num_classes)
        x, y = data.splits["train"]
        if len(x) < spec.train.batch_size:
            raise SpecError([spec.problem(("train", "batch_size"), f"batch_size {spec.train.batch_size} is more "
                                                                   f"than the {len(x)} training samples")])
        torch.manual_seed(spec.seed)
        self.gan = gan = Gan(materialize(nets["generator"]), materialize(nets["discriminator"]), spec.latent,
                             g.classes if g.conditional else None).to(device)
        self.nets = {"generator": gan.generator, "discriminator": gan.discriminator}
        self.scale = scale = Scale.of(nets["generator"], x)
        self.x = scale.to_gen(x).to(device)
        self.y = y.to(device) if y is not None else None
        self.size = len(x)
        self.losses = Losses(g)
        self.classes = data.num_classes if data.task == "classification" else None
        self.monitor = check_monitor(spec, bool(self.classes))
        self.judge, self.judge_metrics = None, {}
        if self.classes:
            every = torch.cat([s[0] for s in data.splits.values()])
            judge, self.judge_metrics = judge_for(engine.folder if engine.main else None, scale.to_gen(every),
                                                  torch.cat([s[1] for s in data.splits.values()]), self.classes)
            self.judge = judge.to(device)
        self.columns, (self.show_z, self.show_y), (self.eval_z, self.eval_y) = fixed_noise(spec, gan, device)
        self.images = is_image(data.sample_shape)
        self.won, self.warnings = 0, []
        rng = f"[{scale.a:g}, {scale.b:g}]" if scale.a is not None else "unchanged (unbounded generator output)"
        engine.say(f"{spec.name}: {len(x)} samples {list(data.sample_shape)}, data range [{scale.low:g}, "
                   f"{scale.high:g}] -> {rng}; {len(x) // spec.train.batch_size} steps per epoch, "
                   f"{g.d_steps} D step(s) per G step")

    def optimizers(self) -> dict:
        o = self.spec.optimizer
        return {"generator": (o.generator, self.gan.generator.parameters()),
                "discriminator": (o.discriminator, self.gan.discriminator.parameters())}

    def batch(self, idx):
        return self.x[idx], self.y[idx] if self.spec.gan.conditional else None

    def step(self, batch, engine) -> dict:
        real, labels = batch  # fakes are asked for the batch's classes
        gan, losses = self.gan, self.losses
        train_g = (engine.step + 1) % self.spec.gan.d_steps == 0
        # noise for the global batch, shared out: the same samples as one process draws
        z = engine.share(gan.noise(engine.global_n, device=engine.device))
        with torch.set_grad_enabled(train_g), engine.cast:  # the G step reuses this forward pass
            fake = gan.generate(z, labels)
        d_loss, d_real, d_fake = d_step(gan, losses, real, fake, labels, engine)
        values = {"train/d_loss": d_loss, "train/d_real": d_real, "train/d_fake": d_fake}
        if train_g:
            values["train/g_loss"] = g_step(gan, losses, fake, labels, engine)
        return values

    def log_start(self, tb) -> None:
        if self.images:
            tb.add_image("real", grid(self.scale.pixels(self.x[:8 * self.columns]).cpu(), self.columns), 0)

    def epoch_end(self, engine, epoch: int, diagnose: bool, metrics: dict) -> dict:
        out = {}
        gan, scale = self.gan, self.scale
        self._discriminator_won(metrics, epoch)
        if diagnose and engine.tb is not None and self.images:
            picture = grid(scale.pixels(gan.generate(self.show_z, self.show_y)).cpu(), self.columns)
            engine.tb.add_image("samples", picture, engine.step)
            write_png(engine.folder / "samples" / f"epoch_{epoch:03d}.png", picture)
        if diagnose and self.judge is not None:
            out.update(quality(self.judge, gan.generate(self.eval_z, self.eval_y), self.eval_y, self.classes))
        return out

    def finish(self, metrics: dict) -> None:
        k, classes, g = metrics.get("quality/classes"), self.classes, self.spec.gan
        if classes and k is not None and k <= classes // 2 and not any("mode collapse" in w for w in self.warnings):
            self.warnings.append(_warn(f"the samples cover only {k} of {classes} classes: mode collapse (the "
                                       "generator found a few outputs that fool the discriminator). Try "
                                       "label_smoothing, a lower generator lr, more epochs"
                                       + ("" if g.conditional else ", or a conditional GAN")))
        metrics.update(self.judge_metrics)
        metrics["warnings"] = self.warnings

    def _discriminator_won(self, metrics: dict, epoch: int) -> None:
        """A discriminator at its loss floor leaves the generator without a useful gradient."""
        self.won = self.won + 1 if metrics["train/d_loss"] < self.losses.floor + 0.05 else 0
        if self.won == COLLAPSE_EPOCHS:
            self.warnings.append(_warn(
                f"epoch {epoch}: the discriminator has won for {self.won} epochs (d_loss "
                f"{metrics['train/d_loss']:.4f}, D(G(z)) {metrics['train/d_fake']:.4f}): the generator learns "
                "nothing. Try a lower discriminator lr, label_smoothing 0.1-0.2, gan.loss non_saturating, or "
                "fewer d_steps"))

    def info(self) -> dict:
        return {**self.data.info(), "shape": list(self.data.sample_shape), "scale": self.scale.__dict__}

    def state(self) -> dict:
        return {"won": self.won, "warnings": list(self.warnings)}

    def load_state(self, state: dict) -> None:
        self.won, self.warnings = state.get("won", 0), list(state.get("warnings", []))

    def graph(self):
        return self.gan, self.show_z[:2]  # D(G(z)): both networks in one graph


KIND = GAN


def _warn(message: str) -> str:
    print(f"warning: {message}", file=sys.stderr)
    return message


# --- using a trained run ---
def restore(spec, state) -> tuple[Gan, Scale, dict]:
    info = state.get("data") or {}
    nets = compile_spec(spec)
    gan = Gan(materialize(nets["generator"], spec.seed), materialize(nets["discriminator"], spec.seed),
              spec.latent, spec.gan.classes if spec.gan.conditional else None)
    try:
        gan.generator.load_state_dict(state["generator"])
        gan.discriminator.load_state_dict(state["discriminator"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"the checkpoint does not fit this spec's networks: {str(e).splitlines()[0][:200]}") from None
    return gan.eval(), Scale(**info["scale"]), info


@torch.no_grad()
def evaluate(spec, state, split=None) -> dict:
    """Quality of the checkpoint's generator (quality/*, when the data has labels), and what D
    says of a split's real samples (default: test, when the data has one)."""
    gan, scale, info = restore(spec, state)
    data = D.load(spec)
    if split is not None and split not in data.splits:
        raise SpecError([spec.problem(("data",), f"the data has no '{split}' split: use --split train, or "
                                                 f"set data.{split}_split")])
    split = split or ("test" if "test" in data.splits else None)
    res = {}
    if split is not None:
        x, y = data.splits[split]
        labels = y if spec.gan.conditional else None
        res[f"{split}/d_real"] = float(Losses(spec.gan).prob(gan.score(scale.to_gen(x), labels)).mean())
    if data.task == "classification":
        every = torch.cat([s[0] for s in data.splits.values()])
        judge, m = judge_for(None, scale.to_gen(every), torch.cat([s[1] for s in data.splits.values()]),
                             data.num_classes)
        _, _, (z, ey) = fixed_noise(spec, gan)  # the same samples as training's quality/*
        res.update(quality(judge, gan.generate(z, ey), ey, data.num_classes))
        res.update(m)
    return res


