"""Frechet distance between Gaussians fitted to feature sets: the math of FID, no extractor.

FID (Heusel et al. 2017) = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), on the mean
and covariance of features of real and generated images. The trace of the matrix square
root is computed from eigenvalues, in float64 with torch: Tr (S1 S2)^(1/2) = sum_i
sqrt(lambda_i), lambda_i the eigenvalues of S1^(1/2) S2 S1^(1/2), which are those of S1 S2
and, that matrix being symmetric positive semi-definite, real and >= 0 (torchmetrics
computes the same sum from eigvals(S1 S2)). It equals scipy's `sqrtm` route of the
reference TTUR / pytorch-fid code (tests check both agree to 1e-6 relative) without its failures
on singular products, and it runs on torch's thread pool: scipy's BLAS threads kept
spinning after each call and slowed the training steps that followed a quality-curve point.
"""

import numpy as np
import torch


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D) in float64; covariance unbiased (N - 1).

    Raises ValueError for fewer than 2 feature vectors.
    """
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"feature statistics need a (N, D) tensor with N >= 2, got shape {tuple(features.shape)}")
    f = features.detach().double().cpu()
    return f.mean(dim=0).numpy(), torch.cov(f.T).numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (D,), sigma: (D, D) symmetric positive semi-definite (singular is fine: a
    covariance of fewer than D samples). Returns a float >= 0 (up to rounding), in
    squared feature units.
    Raises ValueError for mismatched shapes.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances {sigma1.shape}, {sigma2.shape}")
    s1, s2 = torch.from_numpy(sigma1), torch.from_numpy(sigma2)
    root1 = _psd_sqrt(s1)
    eigenvalues = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0)
    trace_covmean = eigenvalues.sqrt().sum().item()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative rounding noise clamped to 0)."""
    eigenvalues, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T
