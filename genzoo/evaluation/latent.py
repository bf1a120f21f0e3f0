"""Latent tools with pictures: interpolation grids, the 2-D latent map, editing.

They work on any family through three methods of GenerativeModel (prior_latents,
decode_latents, encode_latents) and its `latent_space`:

- interpolation.png (every family with a latent code): each row walks from one code to
  another in `steps` equal steps. Codes of two test images (AE, VAE: posterior means,
  with the two images at the row's ends) are joined by a straight line; two draws from a
  N(0, I) prior (GAN z, DDPM's x_T decoded by deterministic DDIM, a conditional VAE's z)
  by slerp (White 2016), whose path keeps the norm typical of the prior where a straight
  line passes near the origin, which the prior almost never draws. A conditional model
  keeps one class per row (row r: class r mod K).
- latent_map.png (an encoder family with latent_dim = 2): the test images placed by their
  codes (posterior means for the VAE), coloured by class, beside the decoded grid of the
  same square of the latent plane (Kingma & Welling 2013, fig. 4).
- edit_grid.png and edit_curve.png (unconditional families with a latent code), with the
  edit_* metrics: codes moved across a linear class boundary and scored
  (genzoo/evaluation/editing.py).
The runner writes them into every run directory; `python -m genzoo model=vae
model.latent_dim=2 data=fashion_mnist` gives the latent map. To draw them again from a
finished run (another seed, other classes to edit), into <run dir>/latent/ (the editing
metrics into <run dir>/latent/editing.json):

    python -m genzoo.latent <run dir> [--seed 1] [--edit 5 7] [--samples 2000]
"""

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from genzoo.artifacts import save_figure, save_grid
from genzoo.data.datamodule import to_unit_range


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t) z0 + t z1 for codes z0, z1 (D...) and fractions t (S,): returns (S, D...)."""
    t = t.view(-1, *([1] * z0.dim())).to(z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016) between codes z0, z1 (D...) at t (S,): (S, D...).

    sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1, w the angle between z0 and z1
    (flattened); the norm moves smoothly between |z0| and |z1|. Nearly parallel codes fall
    back to lerp.
    """
    a, b = z0.flatten().double(), z1.flatten().double()
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        return lerp(z0, z1, t)
    tt = t.double().view(-1, 1)
    path = (torch.sin((1 - tt) * omega) * a + torch.sin(tt * omega) * b) / torch.sin(omega)
    return path.view(len(t), *z0.shape).to(z0.dtype)


@torch.no_grad()
def interpolation_grid(model, test_images: torch.Tensor, test_labels: torch.Tensor, rows: int = 4, steps: int = 8,
                       seed: int = 0) -> tuple[torch.Tensor, int]:
    """Interpolation rows as one image batch, and the images per row (see the module docstring).

    test_images: uint8 (N, C, H, W) (needs N >= 2 * rows for an encoder family); test_labels (N,).
    Returns images (rows * per_row, C, H, W) in [-1, 1] on the CPU; per_row is steps + 2 for an
    encoder family (the two real images at the ends) and steps otherwise.
    Raises NotImplementedError for a family without a latent code.
    """
    if model.latent_space is None:
        raise NotImplementedError(f"{model.family} has no latent code to interpolate")
    t = torch.linspace(0, 1, steps)
    encode = model.latent_space == "encoder" and not model.conditional
    out = []
    if encode:
        x = to_unit_range(_distinct_pairs(test_images, test_labels, rows)).to(model.device)
        codes = model.encode_latents(x)
        for r in range(rows):
            path = model.decode_latents(lerp(codes[2 * r], codes[2 * r + 1], t))
            out.append(torch.cat([x[2 * r : 2 * r + 1], path, x[2 * r + 1 : 2 * r + 2]]).cpu())
        return torch.cat(out), steps + 2
    codes = model.prior_latents(2 * rows, torch.Generator().manual_seed(seed))
    for r in range(rows):
        labels = torch.full((steps,), r % model.num_classes, device=model.device) if model.conditional else None
        out.append(model.decode_latents(slerp(codes[2 * r], codes[2 * r + 1], t), labels).cpu())
    return torch.cat(out), steps


def _distinct_pairs(images: torch.Tensor, labels: torch.Tensor, rows: int) -> torch.Tensor:
    """2 * rows test images, pair r = the first image of class r mod K and the first of class (r + 1) mod K."""
    classes = labels.unique()
    first = {int(c): int((labels == c).nonzero()[0]) for c in classes}
    order = [int(c) for c in classes]
    index = []
    for r in range(rows):
        index += [first[order[r % len(order)]], first[order[(r + 1) % len(order)]]]
    return images[index]


@torch.no_grad()
def encode_all(model, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Codes (N, latent_dim) on the CPU of uint8 images (N, C, H, W), in batches."""
    return torch.cat([model.encode_latents(to_unit_range(images[i : i + batch_size]).to(model.device)).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def latent_map(model, test_images: torch.Tensor, test_labels: torch.Tensor, class_names, side: int = 15,
               codes: torch.Tensor | None = None) -> Figure:
    """The 2-D latent map of an encoder family with a 2-d code (see the module docstring).

    Left: every test image's code, coloured by class (legend: class_names). Right: the
    decoded side x side grid spanning the square that holds the central 98% of the codes on
    each axis, drawn with the same axes. Raises ValueError for a code that is not 2-d or a
    family without an encoder.
    """
    if model.latent_space != "encoder" or model.conditional:
        raise ValueError(f"the latent map needs an unconditional family with an encoder (family.latent: encoder), got {model.family}")
    codes = encode_all(model, test_images) if codes is None else codes
    if codes.shape[1] != 2:
        raise ValueError(f"the latent map needs a 2-d code, got latent_dim={codes.shape[1]}: run with model.latent_dim=2")
    lo, hi = np.percentile(codes.numpy(), [1, 99], axis=0)
    xs, ys = np.linspace(lo[0], hi[0], side), np.linspace(hi[1], lo[1], side)  # image rows run downwards
    grid = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32, device=model.device)
    tiles = ((model.decode_latents(grid).cpu() + 1) / 2).clamp(0, 1)  # (side^2, C, H, W)
    c, h, w = tiles.shape[1:]
    mosaic = tiles.view(side, side, c, h, w).permute(0, 3, 1, 4, 2).reshape(side * h, side * w, c).numpy()
    fig = Figure(figsize=(12, 5.6))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(0))  # no class drawn over all the others
    colours = colormaps["tab10"](test_labels[order].numpy() % 10)
    left.scatter(codes[order, 0].numpy(), codes[order, 1].numpy(), s=2, alpha=0.5, c=colours)
    for k, name in enumerate(class_names):
        left.scatter([], [], s=12, color=colormaps["tab10"](k % 10), label=name)
    left.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="z1", ylabel="z2",
             title=f"{len(codes)} test images at their codes")
    left.legend(fontsize=7, loc="upper right", framealpha=0.8)
    right.imshow(mosaic.squeeze(-1) if c == 1 else mosaic, cmap="gray", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto")
    right.set(xlabel="z1", ylabel="z2", title=f"decoded {side} x {side} grid of the same square")
    fig.tight_layout()
    return fig


def write_latent_pictures(model, data, run_dir: Path, seed: int) -> list[Path]:
    """Write interpolation.png (and latent_map.png) as the module docstring says, into run_dir; returns their paths.

    data: the data module (test_images uint8, test_labels, class_names). The editing
    pictures come from genzoo.evaluation.editing.edit_run, with their metrics.
    """
    run_dir, written = Path(run_dir), []
    if model.latent_space is None:
        return written
    was_training = model.training
    model.eval()
    images, per_row = interpolation_grid(model, data.test_images, data.test_labels, seed=seed)
    save_grid(images, run_dir / "interpolation.png", nrow=per_row)
    written.append(run_dir / "interpolation.png")
    if model.latent_space == "encoder" and not model.conditional and model.hparams.get("latent_dim") == 2:
        save_figure(latent_map(model, data.test_images, data.test_labels, data.class_names), run_dir / "latent_map.png")
        written.append(run_dir / "latent_map.png")
    model.train(was_training)
    return written
