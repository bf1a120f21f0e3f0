"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel."""

import torch


def kid_subset_size(subset_size: int, n_real: int, n_fake: int) -> int:
    """Rows per KID subset: min(subset_size, N // 2, M // 2), at least 2."""
    return max(2, min(subset_size, n_real // 2, n_fake // 2))


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, generator: torch.Generator | None = None) -> tuple[float, float]:
    """KID of two feature sets (N, D) and (M, D): (mean, std) of the unbiased MMD^2 over subsets.

    Kernel k(x, y) = (x.y / D + 1)^3. Each of `subsets` draws m rows of each set without
    replacement, as torch-fidelity and torchmetrics do, with m = min(subset_size, N // 2,
    M // 2): half the smaller set at most, so that subsets differ and the std means something.
    The estimator is unbiased, so two samples of one distribution give values around 0
    (negative ones included). Computed in float64.
    Raises ValueError for mismatched feature sizes or sets with fewer than 2 rows.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1] or min(len(real), len(fake)) < 2:
        raise ValueError(f"KID needs (N, D) and (M, D) features with N, M >= 2, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.double(), fake.double()
    m = kid_subset_size(subset_size, len(real), len(fake))
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=generator)[:m]]
        y = fake[torch.randperm(len(fake), generator=generator)[:m]]
        k_xx, k_yy, k_xy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off_diag = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        values.append((off_diag - 2 * k_xy.mean()).item())
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), (values.std().item() if subsets > 1 else 0.0)
