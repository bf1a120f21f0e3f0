"""Frechet distance between Gaussians fitted to feature sets: the math of FID, no extractor.

FID (Heusel et al. 2017) = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), on the mean
and covariance of features of real and generated images. The matrix square root is
scipy's `sqrtm`, as in the reference TTUR and pytorch-fid code, in float64.
"""

import numpy as np
import torch
from scipy import linalg


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D) in float64; covariance unbiased (N - 1).

    Raises ValueError for fewer than 2 feature vectors.
    """
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"feature statistics need a (N, D) tensor with N >= 2, got shape {tuple(features.shape)}")
    f = features.detach().double().cpu().numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (D,), sigma: (D, D) symmetric positive semi-definite. When the product of the
    covariances is singular, eps * I is added to both, as the reference implementation
    does. Returns a float >= 0 (up to rounding), in squared feature units.
    Raises ValueError for mismatched shapes.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances {sigma1.shape}, {sigma2.shape}")
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
