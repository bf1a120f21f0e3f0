"""Editing measured: move latent codes across a linear class boundary and score the edited images.

One mechanism for every unconditional family with a latent code (InterFaceGAN, Shen et
al. 2020, on the domain's classes instead of face attributes):

1. **Labelled codes.** An encoder family (AE, VAE, VQ-VAE) encodes the first n test images
   and labels each code by its image's class; a prior family (GAN z, DDPM / LDM x_T decoded
   by deterministic DDIM, the score model's x_T decoded by the probability-flow ODE) draws
   n codes from its prior, decodes them and labels each by the domain classifier's choice.
   The codes alternate between a fitting half (even positions) and an editing half (odd).
2. **A direction**, fitted on the fitting half's codes of the source and target classes:
   `boundary`: the unit normal n of a logistic-regression boundary (scikit-learn) between
   them, pointing to the target; `class_mean` (the baseline): the unit vector along the
   difference of the two classes' mean codes. Either way the step is the gap between the
   class means along the direction, s = (mean target - mean source) . n, so an edit
   z + alpha s n with alpha = 1 moves a code as far as the classes' centres lie apart
   along n: a scale every family shares, whatever its code's size.
3. **Edits**: the editing half's codes of the source class (a prior family's: those the
   classifier calls source) decoded at z + alpha s n for alpha in ALPHAS; alpha = 0 is the
   reconstruction (encoder families) or the unedited sample (prior families).
4. **Scores** of the edited images against the unedited ones (alpha = 0), in the domain
   classifier's feature space: `flip_rate` (share classified as the target),
   `preservation` (share whose nearest unedited image, once the edits' common shift is
   taken away, is still their own: identity kept)
   and `distance` (mean feature distance to their own unedited image over the mean
   distance between two different unedited images: 0 unchanged, 1 as far as another
   image); at REPORTED_ALPHA the realism of the edited set: classifier FID and KID
   against the target class's test images, beside the same FID between two halves of
   those test images (the floor at that n).

metrics.json keys (the boundary direction; `_class_mean` suffixed for the baseline):
edit_flip_rate, edit_preservation, edit_distance, edit_fid_classifier, edit_kid_classifier,
edit_fid_floor, edit_alpha, edit_sources, edit_boundary_accuracy (the boundary's accuracy
on the editing half's source and target codes: is the class linear in the code?), and
edit_curve (every score at every alpha, for edit_curve.png). VQ tokens (the token
transformer) and Langevin chains (the EBM) have no continuous code to move: no editing.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from genzoo.artifacts import save_figure, save_grid
from genzoo.evaluation.latent import encode_all
from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.harness import extract, real_features
from genzoo.metrics.kid import kernel_distance

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
REPORTED_ALPHA = 1.0
DIRECTIONS = ("boundary", "class_mean")
MIN_CODES = 2  # codes of each class needed in the fitting half, and sources in the editing half
DEFAULT_EDIT_SAMPLES = 2000  # labelled codes when a run's budget predates budget.edit_samples


@dataclass
class EditDirection:
    """A unit direction `normal` (code shape) and the step `step` (> 0 when the target's mean lies ahead) of an edit.

    method: "boundary" or "class_mean"; edit(z, alpha) = z + alpha * step * normal.
    threshold: where the decision boundary crosses the normal (the logistic regression's
    own for "boundary"; halfway between the class means' projections for "class_mean");
    `is_target` classifies codes by the side of it they fall on.
    """

    normal: torch.Tensor
    step: float
    method: str
    threshold: float = 0.0

    def is_target(self, z: torch.Tensor) -> torch.Tensor:
        """(N,) bool: codes z (N, *code shape) beyond the threshold along the normal."""
        return z.flatten(1).double() @ self.normal.flatten().double() > self.threshold

    def edit(self, z: torch.Tensor, alpha: float) -> torch.Tensor:
        """Codes z (N, *code shape) moved by alpha steps along the normal: same shape."""
        return z + alpha * self.step * self.normal.to(z)


def fit_direction(codes: torch.Tensor, is_target: torch.Tensor, method: str = "boundary", C: float = 1.0) -> EditDirection:
    """The edit direction between two classes of codes (module docstring, step 2).

    codes: (N, *code shape) float; is_target: (N,) bool, True for the target class, False
    for the source. method "boundary": the normal of an L2-regularised logistic regression
    (scikit-learn, inverse regularisation C, lbfgs) on the flattened codes; "class_mean":
    the normalised difference of the class means.
    Raises ValueError for an unknown method or fewer than MIN_CODES codes of either class.
    """
    if method not in DIRECTIONS:
        raise ValueError(f"unknown edit direction '{method}': choose one of {', '.join(DIRECTIONS)}")
    is_target = is_target.bool()
    counts = (int((~is_target).sum()), int(is_target.sum()))
    if min(counts) < MIN_CODES:
        raise ValueError(f"fitting an edit direction needs at least {MIN_CODES} codes of each class, got {counts[0]} source and {counts[1]} target")
    x = codes.flatten(1).double()
    gap = x[is_target].mean(0) - x[~is_target].mean(0)
    if method == "class_mean":
        normal = gap / gap.norm()
        threshold = (x[is_target].mean(0) + x[~is_target].mean(0)) @ normal / 2
    else:
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=C, max_iter=5000).fit(x.numpy(), is_target.numpy())
        w = torch.from_numpy(fit.coef_[0]).double()
        normal, threshold = w / w.norm(), -float(fit.intercept_[0]) / w.norm()  # w.x + b > 0  <=>  n.x > -b / |w|
    return EditDirection(normal.view(codes.shape[1:]).float(), float(gap @ normal), method, float(threshold))


def flip_rate(logits: torch.Tensor, target: int) -> float:
    """Share of images (logits (N, K)) the classifier calls class `target`, in [0, 1]."""
    return (logits.argmax(1) == target).float().mean().item()


def preservation(edited: torch.Tensor, unedited: torch.Tensor) -> float:
    """Share of edits still nearest their own unedited image once the edits' common change is taken away, in [0, 1].

    edited, unedited: features (N, D), row i the edit of row i. The mean shift (edited -
    unedited averaged over rows: the attribute the edit adds to every image) is subtracted
    from each edit before its nearest unedited image is found; without it, a large common
    shift leaves the match to whichever image differs least along it. Chance is 1 / N.
    Raises ValueError for feature sets of different shapes.
    """
    _same_shape(edited, unedited)
    residual = edited - (edited - unedited).mean(0)
    return (torch.cdist(residual, unedited).argmin(1) == torch.arange(len(edited))).float().mean().item()


def relative_distance(edited: torch.Tensor, unedited: torch.Tensor) -> float:
    """Mean distance from each edit to its own unedited image over the mean distance between two different unedited images.

    Features (N, D), N >= 2; 0 when nothing moved, about 1 when an edit lies as far from its
    image as another image does. Raises ValueError for shapes that differ or N < 2.
    """
    _same_shape(edited, unedited)
    if len(unedited) < 2:
        raise ValueError("the relative distance needs at least 2 images")
    pairs = torch.cdist(unedited, unedited)
    n = len(unedited)
    between = (pairs.sum() / (n * (n - 1))).item()  # the diagonal is 0
    moved = (edited - unedited).norm(dim=1).mean().item()
    if between == 0:  # every unedited image alike (an untrained decoder): no scale to measure against
        return 0.0 if moved == 0 else math.inf
    return moved / between


def _same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"edited and unedited features must match row for row, got {tuple(a.shape)} and {tuple(b.shape)}")


@torch.no_grad()
def labelled_codes(model, data, extractor, n: int, seed: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes (n, *code shape), labels (n,)) on the CPU, as step 1 of the module docstring.

    Encoder families: the first n test images' codes and classes; prior families: n prior
    draws (generator seeded with `seed`) and the domain classifier's class of each decode.
    """
    if model.latent_space == "encoder":
        n = min(n, len(data.test_images))
        return encode_all(model, data.test_images[:n], batch_size), data.test_labels[:n].clone()
    codes = model.prior_latents(n, torch.Generator().manual_seed(seed)).cpu()
    _, logits = extract(extractor, lambda a, b: decode(model, codes[a:b]), n, batch_size)
    return codes, logits.argmax(1)


def decode(model, codes: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] on the CPU that codes (N, *code shape) decode to."""
    return model.decode_latents(codes.to(model.device)).cpu()


@dataclass
class EditingResult:
    """What measure_editing found: metrics (the keys of the module docstring), cards ({key: protocol text}) and the grid.

    grid: images (rows * len(ALPHAS), C, H, W) in [-1, 1], row r the r-th source edited
    along the boundary at each alpha (None when editing could not be measured); skipped:
    why, or None.
    """

    metrics: dict
    cards: dict
    grid: torch.Tensor | None = None
    skipped: str | None = None


@torch.no_grad()
def measure_editing(model, data, extractor, source: int, target: int, n: int, seed: int, batch_size: int, cache_dir,
                    kid_subsets: int = 100, grid_rows: int = 6) -> EditingResult:
    """Fit both directions and score the edits (module docstring) of an unconditional model with a latent code.

    extractor: the classifier Extractor (features and logits); n: labelled codes (budget.edit_samples);
    seed: the prior draws' and KID subsets' seed; cache_dir: the real-feature cache.
    When too few codes of a class turn up (an untrained prior family may decode every code to
    one class), the metrics are None and `skipped` says how many did.
    Raises ValueError for a model that is conditional or has no latent code.
    """
    if model.latent_space is None or model.conditional:
        raise ValueError(f"editing needs an unconditional family with a latent code, got {model.family}"
                         + (" (conditional)" if model.conditional else ""))
    codes, labels = labelled_codes(model, data, extractor, n, seed, batch_size)
    fit_codes, fit_labels = codes[0::2], labels[0::2]
    edit_codes, edit_labels = codes[1::2], labels[1::2]
    pair = (fit_labels == source) | (fit_labels == target)
    sources = edit_codes[edit_labels == source]
    counts = {"fit_source": int((fit_labels == source).sum()), "fit_target": int((fit_labels == target).sum()), "edit_sources": len(sources)}
    how = "test images" if model.latent_space == "encoder" else "prior draws labelled by the domain classifier"
    if min(counts.values()) < MIN_CODES:
        reason = (f"too few codes: of {len(codes)} {how}, the fitting half has {counts['fit_source']} of class {source} and "
                  f"{counts['fit_target']} of class {target}, the editing half {counts['edit_sources']} of class {source} "
                  f"(need {MIN_CODES} each): raise budget.edit_samples or train longer")
        return EditingResult({k: None for k in _metric_keys()}, {"edit_flip_rate": reason}, None, reason)

    test_features = real_features(extractor, data.test_images, data.name, "test", cache_dir, batch_size)
    real_target = test_features[data.test_labels == target]
    m = min(len(sources), len(real_target) // 2)

    def decoded(z):  # few decoder calls: an iterative decoder (DDIM, an ODE solve) pays per call
        return torch.cat([decode(model, z[i : i + batch_size]) for i in range(0, len(z), batch_size)])

    def features(images):
        return extract(extractor, lambda a, b: images[a:b], len(images), batch_size)

    k = len(sources)
    unedited_images = decoded(sources)
    unedited, unedited_logits = features(unedited_images)
    moved = [a for a in ALPHAS if a != 0]
    metrics, curve, grid = {}, {"alphas": list(ALPHAS)}, None
    for method in DIRECTIONS:
        direction = fit_direction(fit_codes[pair], fit_labels[pair] == target, method)
        suffix = "" if method == "boundary" else "_class_mean"
        images = decoded(torch.cat([direction.edit(sources, a) for a in moved]))  # alpha-major: rows [j k, (j + 1) k) at moved[j]
        feats_all, logits_all = features(images)
        scores = {"flip_rate": [], "preservation": [], "distance": []}
        for alpha in ALPHAS:
            if alpha == 0:
                feats, logits = unedited, unedited_logits
            else:
                j = moved.index(alpha)
                feats, logits = feats_all[j * k : (j + 1) * k], logits_all[j * k : (j + 1) * k]
            scores["flip_rate"].append(flip_rate(logits, target))
            scores["preservation"].append(preservation(feats, unedited))
            scores["distance"].append(relative_distance(feats, unedited))
            if alpha == REPORTED_ALPHA:
                realism = feats
        at = ALPHAS.index(REPORTED_ALPHA)
        metrics.update({f"edit_{key}{suffix}": v[at] for key, v in scores.items()})
        metrics[f"edit_fid_classifier{suffix}"] = frechet_distance(*feature_statistics(real_target[:m]), *feature_statistics(realism[:m]))
        kid, _ = kernel_distance(real_target, realism, kid_subsets, len(realism), torch.Generator().manual_seed(seed))
        metrics[f"edit_kid_classifier{suffix}"] = kid
        curve[method] = scores
        if method == "boundary":
            held_out = (edit_labels == source) | (edit_labels == target)
            hits = direction.is_target(edit_codes[held_out]) == (edit_labels[held_out] == target)
            metrics["edit_boundary_accuracy"] = hits.float().mean().item()
            rows = min(grid_rows, k)
            columns = [unedited_images[:rows]] + [images[j * k : j * k + rows] for j in range(len(moved))]
            grid = torch.stack(columns, 1).flatten(0, 1)  # row r: source r at each alpha
    metrics["edit_fid_floor"] = frechet_distance(*feature_statistics(real_target[:m]), *feature_statistics(real_target[m : 2 * m]))
    metrics.update({"edit_alpha": REPORTED_ALPHA, "edit_sources": len(sources), "edit_curve": curve})
    cards = _cards(data, source, target, len(codes), how, len(sources), m, seed, kid_subsets)
    return EditingResult(metrics, cards, grid)


def _metric_keys() -> list[str]:
    keys = []
    for suffix in ("", "_class_mean"):
        keys += [f"edit_{k}{suffix}" for k in ("flip_rate", "preservation", "distance", "fid_classifier", "kid_classifier")]
    return keys + ["edit_boundary_accuracy", "edit_fid_floor", "edit_alpha", "edit_sources", "edit_curve"]


def _cards(data, source, target, n, how, n_sources, m, seed, kid_subsets) -> dict:
    names = getattr(data, "class_names", None) or [str(c) for c in range(data.num_classes)]
    codes = f"{n} {how} (seed {seed}), halved alternately: the even ones fit the direction, the odd ones' {n_sources} of class {source} are edited"
    edit = (f"class {source} ({names[source]}) -> {target} ({names[target]}) along the logistic-regression boundary's normal "
            f"(scikit-learn, C = 1) at alpha = {REPORTED_ALPHA} steps of the class-mean gap along it; {codes}")
    return {
        "edit_flip_rate": f"share of edits the domain classifier calls class {target}; {edit}",
        "edit_preservation": "share of edits whose nearest unedited source (classifier features, after subtracting the edits' "
                             f"mean shift) is their own; chance 1/{n_sources}",
        "edit_distance": "mean classifier-feature distance of an edit to its unedited image over the mean distance between two unedited images",
        "edit_fid_classifier": f"classifier FID of the first {m} edits against the first {m} test images of class {target}; "
                               f"edit_fid_floor: the same between those and the next {m}; KID: all edits against all "
                               f"{int((data.test_labels == target).sum())} ({kid_subsets} subsets of half the edits)",
        "edit_flip_rate_class_mean": "the same scores along the difference of the class means (the baseline direction)",
        "edit_curve": f"every score at alpha in {list(ALPHAS)} for both directions",
    }


def edit_run(model, data, eval_cfg, edit_classes, n: int, seed: int, out_dir: Path) -> tuple[dict, dict]:
    """The editing metrics and cards of a run ({}, {} when they do not apply), with its pictures written into out_dir.

    Applies when edit_classes is (source, target) and the model is unconditional with a
    latent code; eval_cfg gives the batch size and KID subsets; n: budget.edit_samples.
    """
    if edit_classes is None or model.latent_space is None or model.conditional:
        return {}, {}
    from genzoo.metrics.harness import build_extractor, eval_cache_dir

    cache_dir = eval_cache_dir(eval_cfg)
    extractor = build_extractor("classifier", data, cache_dir, model.device)
    was_training = model.training
    model.eval()
    source, target = (int(c) for c in edit_classes)
    result = measure_editing(model, data, extractor, source, target, n, seed, eval_cfg.batch_size, cache_dir, eval_cfg.kid_subsets)
    model.train(was_training)
    names = getattr(data, "class_names", None)
    title = f"{model.family}: {names[source]} -> {names[target]}" if names else f"{model.family}: class {source} -> {target}"
    write_editing(result, out_dir, title)
    return result.metrics, {name: {"metric": text} for name, text in result.cards.items()}


def curve_figure(curve: dict, title: str = "") -> Figure:
    """edit_curve.png: flip rate, preservation and relative distance against alpha, one line per direction.

    curve: metrics["edit_curve"], {"alphas": [...], <direction>: {"flip_rate": [...], "preservation": [...], "distance": [...]}}.
    """
    fig = Figure(figsize=(12, 3.6))
    for i, (key, label) in enumerate((("flip_rate", "flip rate (target class)"), ("preservation", "preservation (own source nearest)"),
                                      ("distance", "feature distance / between images"))):
        ax = fig.add_subplot(1, 3, i + 1)
        for method in DIRECTIONS:
            if method in curve:
                ax.plot(curve["alphas"], curve[method][key], marker="o", label=method.replace("_", " "))
        ax.axvline(REPORTED_ALPHA, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="alpha (steps of the class-mean gap)", ylabel=label)
        if key != "distance":
            ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_editing(result: EditingResult, run_dir: Path, title: str = "") -> list[Path]:
    """Write edit_grid.png (rows: sources, columns: ALPHAS) and edit_curve.png into run_dir; returns their paths ([] when skipped)."""
    if result.grid is None:
        return []
    run_dir = Path(run_dir)
    save_grid(result.grid, run_dir / "edit_grid.png", nrow=len(ALPHAS))
    save_figure(curve_figure(result.metrics["edit_curve"], title), run_dir / "edit_curve.png")
    return [run_dir / "edit_grid.png", run_dir / "edit_curve.png"]
