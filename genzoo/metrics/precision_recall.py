"""Improved precision and recall (Kynkaanniemi et al. 2019) on feature sets."""

import torch


def knn_radii(features: torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row of features (N, D) to its k-th nearest other row: (N,).

    Raises ValueError unless 1 <= k < N.
    """
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in [1, N) for N={len(features)} feature vectors, got k={k}")
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start : start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the row itself, at distance 0
    return torch.cat(radii)


def _coverage(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Share of `points` inside at least one ball (support_j, radii_j)."""
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], support)
        inside.append((d <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) in [0, 1] of fake features (M, D) against real ones (N, D).

    Precision: share of fake samples inside the k-NN manifold of the real set (a union of
    balls reaching each real point's k-th neighbour); recall: share of real samples inside
    the fake set's manifold. k = 3 as Kynkaanniemi et al. Distances in float32 Euclidean.
    """
    real, fake = real.float(), fake.float()
    precision = _coverage(fake, real, knn_radii(real, k))
    recall = _coverage(real, fake, knn_radii(fake, k))
    return precision, recall
