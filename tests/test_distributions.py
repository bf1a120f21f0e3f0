import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from genzoo.distributions import (
    bernoulli_log_likelihood,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    standard_normal_kl,
)

LEVELS = torch.arange(256, dtype=torch.float64).div(127.5).sub(1).float()  # the 256 values of x/127.5 - 1


@pytest.mark.parametrize("mean,log_scale", [(0.0, 0.0), (0.3, -3.0), (-0.97, -5.0), (1.5, -1.0), (0.0, -7.0), (-2.0, 1.0)])
def test_discretized_gaussian_sums_to_one_over_the_256_levels(mean, log_scale):
    ll = discretized_gaussian_log_likelihood(LEVELS, torch.tensor(mean), torch.tensor(log_scale))
    assert torch.all(ll <= 0)
    assert ll.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_discretized_gaussian_matches_density_times_bin_width_for_a_wide_gaussian():
    x, mean, scale = LEVELS[100:150], torch.tensor(0.0), 0.5
    ll = discretized_gaussian_log_likelihood(x, mean, torch.tensor(math.log(scale)))
    approx = Normal(mean, scale).log_prob(x) + math.log(2 / 255)
    torch.testing.assert_close(ll, approx, atol=1e-4, rtol=0)


def test_discretized_gaussian_edge_bins_take_the_tails():
    # A Gaussian far below -1 puts (almost) all mass in the bottom bin; far above 1, in the top one.
    low = discretized_gaussian_log_likelihood(LEVELS[[0, 255]], torch.tensor(-5.0), torch.tensor(-2.0))
    high = discretized_gaussian_log_likelihood(LEVELS[[0, 255]], torch.tensor(5.0), torch.tensor(-2.0))
    assert low[0].item() == pytest.approx(0.0, abs=1e-6) and high[1].item() == pytest.approx(0.0, abs=1e-6)
    assert low[1].item() < -100 and high[0].item() < -100


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(100, generator=g, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)
    zeros = torch.zeros_like(m1)
    torch.testing.assert_close(standard_normal_kl(m1, lv1), normal_kl(m1, lv1, zeros, zeros))
    assert torch.all(standard_normal_kl(zeros, zeros) == 0)


def test_bernoulli_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, generator=g) * 3
    x = (torch.rand(50, generator=g) > 0.5).float()
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), Bernoulli(logits=logits).log_prob(x))


def test_bits_per_dim_closed_form():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(3072 * 8 * math.log(2), 3072) == pytest.approx(8.0)  # a uniform 8-bit model
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)


def test_dequantize_moves_each_pixel_within_its_level_and_charges_the_level_width():
    from genzoo.distributions import LEVEL_WIDTH, dequantize

    x = torch.randint(0, 256, (3, 1, 4, 4)).float() / 127.5 - 1
    moved, bin_nats = dequantize(x, torch.Generator().manual_seed(0))
    assert LEVEL_WIDTH == pytest.approx(2 / 255)
    assert ((moved - x).abs() <= LEVEL_WIDTH / 2).all() and not torch.equal(moved, x)
    assert torch.equal(torch.round((moved + 1) * 127.5), torch.round((x + 1) * 127.5))  # still in its own level
    assert bin_nats == pytest.approx(16 * math.log(127.5))  # a uniform density on the level: log(1 / width) per dimension
    assert torch.equal(moved, dequantize(x, torch.Generator().manual_seed(0))[0])
