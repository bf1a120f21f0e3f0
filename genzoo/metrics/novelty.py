"""Novelty: do generated images copy training images? Nearest neighbours in feature space."""

import torch


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances (M,), indices (M,)) of each query row's nearest row of `bank` (N, D), Euclidean."""
    dists, idx = [], []
    for start in range(0, len(queries), chunk):
        d, i = torch.cdist(queries[start : start + chunk].float(), bank.float()).min(dim=1)
        dists.append(d)
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


def memorisation_rate(fake: torch.Tensor, train: torch.Tensor, test: torch.Tensor, percentile: float = 1.0) -> tuple[float, float]:
    """(rate, threshold): share of fake samples closer to a training image than real test images usually are.

    threshold = the `percentile`-th percentile (default 1st) of the distances from each test
    feature to its nearest training feature: a held-out real image is that close to the
    training set only 1% of the time. rate = share of fake features (M, D) whose nearest
    training feature lies below it; a model that generalises scores about percentile / 100,
    one that copies its training set scores near 1.
    """
    threshold = torch.quantile(nearest_neighbours(test, train)[0], percentile / 100).item()
    rate = (nearest_neighbours(fake, train)[0] < threshold).float().mean().item()
    return rate, threshold
