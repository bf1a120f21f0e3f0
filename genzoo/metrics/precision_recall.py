"""Improved precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020) on feature sets."""

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


def share_inside_balls(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Share in [0, 1] of `points` (N, D) inside at least one ball (support_j, radii_j), support (M, D), radii (M,).

    Precision and recall are this with the real or the generated k-NN balls; restricted to a
    subset of the real points (one class), it is that subset's recall.
    """
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
    precision = share_inside_balls(fake, real, knn_radii(real, k))
    recall = share_inside_balls(real, fake, knn_radii(fake, k))
    return precision, recall


DENSITY_COVERAGE_K = 5  # Naeem et al.'s k


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DENSITY_COVERAGE_K, chunk: int = 1024) -> tuple[float, float]:
    """(density, coverage) of fake features (M, D) against real ones (N, D) (Naeem et al. 2020).

    Both use only the real points' k-NN balls B(r_i, radius_i), radius_i the distance of r_i
    to its k-th nearest other real point, so an outlying fake sample, whose own k-NN ball
    is large, cannot inflate them as it inflates recall.
    Density: (1 / (k M)) sum_j #{i: f_j in B(r_i, radius_i)}, about 1 when the fakes are
    spread as the real points are (unbounded above: fakes packed where the real points are
    dense). Coverage in [0, 1]: the share of real points whose ball holds at least one fake.
    Distances in float32 Euclidean. Raises ValueError unless 1 <= k < N.
    """
    real, fake = real.float(), fake.float()
    radii = knn_radii(real, k)
    inside, covered = 0, []
    for start in range(0, len(real), chunk):
        hit = torch.cdist(real[start : start + chunk], fake) <= radii[start : start + chunk, None]  # (chunk, M)
        inside += hit.sum().item()
        covered.append(hit.any(dim=1))
    return inside / (k * len(fake)), torch.cat(covered).float().mean().item()
