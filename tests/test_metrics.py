import math

import numpy as np
import pytest
import torch

from genzoo.metrics.classes import class_coverage, inception_score
from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.kid import kernel_distance
from genzoo.metrics.novelty import memorisation_rate, nearest_neighbours
from genzoo.metrics.precision_recall import density_coverage, knn_radii, precision_recall
from genzoo.metrics.reference import cached_features, reference_path


def test_frechet_distance_closed_form_2d():
    # commuting covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a_i) - sqrt(b_i))^2
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    s1, s2 = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    expected = (9 + 4) + (2 - 1) ** 2 + (1 - 3) ** 2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # a rotated pair (non-diagonal): the distance is invariant under a common rotation
    r = np.array([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    assert frechet_distance(r @ mu1, r @ s1 @ r.T, r @ mu2, r @ s2 @ r.T) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("n", [1000, 40])  # 40 < D: singular covariances, as at small curve sample counts
def test_frechet_distance_matches_scipy_sqrtm_reference(n):
    from scipy import linalg

    g = torch.Generator().manual_seed(n)
    real, fake = torch.randn(n, 64, generator=g) @ torch.randn(64, 64, generator=g), torch.randn(n, 64, generator=g) * 1.5 + 0.2
    (mu1, s1), (mu2, s2) = feature_statistics(real), feature_statistics(fake)
    covmean = linalg.sqrtm(s1 @ s2).real  # the TTUR / pytorch-fid formula
    reference = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)


def test_fid_of_a_feature_set_against_itself_is_zero():
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)) @ torch.randn(16, 16)
    stats = feature_statistics(features)
    assert abs(frechet_distance(*stats, *stats)) < 1e-6


def test_feature_statistics_and_shape_errors():
    mu, sigma = feature_statistics(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    assert np.allclose(mu, [2, 4]) and np.allclose(sigma, [[2, 4], [4, 8]])  # unbiased (N - 1)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="mismatched statistics"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_kid_is_unbiased_around_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    # independent pairs of small samples of N(0, I): the unbiased MMD^2 averages to 0 (a biased one would be > 0)
    draws = torch.tensor([kernel_distance(torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g), subsets=1, generator=g)[0] for _ in range(300)])
    assert abs(draws.mean()) < 3 * draws.std() / math.sqrt(len(draws)) and (draws < 0).any()
    a, b = torch.randn(400, 4, generator=g), torch.randn(400, 4, generator=g)
    shifted, shifted_std = kernel_distance(a, b + 1.0, subsets=10, subset_size=200, generator=g)
    assert shifted > 10 * draws.std() and shifted_std > 0
    with pytest.raises(ValueError, match="KID needs"):
        kernel_distance(a, torch.randn(10, 3))


def test_precision_recall_of_identical_sets_is_one_and_of_disjoint_sets_zero():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x.clone()) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_knn_radii_closed_form_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(points, k=3).tolist() == [7.0, 6.0, 4.0, 7.0]
    with pytest.raises(ValueError, match="k must be in"):
        knn_radii(points, k=4)


def test_density_and_coverage_closed_forms_on_a_line():
    """Real points 0..9 on a line, k = 1 (every ball has radius 1): one fake at 0.5 sits in 2 balls, covers points 0 and 1."""
    real = torch.arange(10.0).unsqueeze(1)
    assert density_coverage(real, torch.tensor([[0.5]]), k=1) == pytest.approx((2.0, 0.2))
    assert density_coverage(real, torch.tensor([[100.0]]), k=1) == (0.0, 0.0)
    # an outlying fake does not inflate them, where recall counts every real point inside its large ball
    fakes = torch.tensor([[0.5], [30.0]])
    assert density_coverage(real, fakes, k=1) == pytest.approx((1.0, 0.2)) and precision_recall(real, fakes, k=1)[1] == 1.0
    assert density_coverage(real, real.clone(), k=1)[1] == 1.0
    with pytest.raises(ValueError, match="k must be in"):
        density_coverage(real[:2], real, k=2)


def test_inception_score_closed_forms():
    k = 10
    one_hot_balanced = torch.eye(k).repeat(10, 1) * 50.0  # confident and balanced: IS = K
    assert inception_score(one_hot_balanced, splits=1)[0] == pytest.approx(k, rel=1e-6)
    uniform = torch.zeros(100, k)  # no confidence: IS = 1
    assert inception_score(uniform, splits=5) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="splits"):
        inception_score(uniform, splits=0)


def test_class_coverage_and_kl_to_uniform():
    balanced = torch.eye(4).repeat(5, 1)
    assert class_coverage(balanced) == pytest.approx((1.0, 0.0))
    collapsed = torch.eye(4)[[0] * 20]
    assert class_coverage(collapsed) == pytest.approx((0.25, math.log(4)))


def test_memorisation_rate_flags_copies():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(500, 4, generator=g), torch.randn(200, 4, generator=g)
    copies = train[:100] + 1e-4
    assert memorisation_rate(copies, train, test)[0] == 1.0
    fresh = torch.randn(1000, 4, generator=g)
    assert memorisation_rate(fresh, train, test)[0] < 0.05
    d, idx = nearest_neighbours(copies, train)
    assert torch.equal(idx, torch.arange(100)) and d.max() < 1e-3


def test_reference_cache_hits_and_recomputes_on_a_key_mismatch(tmp_path, capsys):
    key = {"dataset": "d", "split": "test", "extractor": "e", "weights_sha256": "ab" * 32, "resize": "none", "n": 3}
    calls = []

    def compute():
        calls.append(1)
        return torch.full((3, 2), float(len(calls)))

    first = cached_features(tmp_path, key, compute)
    again = cached_features(tmp_path, key, compute)
    assert torch.equal(first, again) and len(calls) == 1
    # same file name, different stored key (e.g. a file computed under another split seed): recompute
    path = reference_path(tmp_path, key)
    torch.save({"key": {**key, "split": "test(other)"}, "features": torch.zeros(3, 2)}, path)
    third = cached_features(tmp_path, key, compute)
    assert len(calls) == 2 and torch.equal(third, torch.full((3, 2), 2.0))
    assert "computed under another key; recomputing" in capsys.readouterr().out
    assert torch.load(path, weights_only=True)["key"] == key


def test_flops_per_sample_of_a_linear_sampler_is_2_in_out():
    from genzoo.metrics.resources import flops_per_sample, peak_memory

    net = torch.nn.Linear(8, 5)

    def sample(n, generator=None):
        return net(torch.randn(n, 8, generator=generator))

    assert flops_per_sample(sample, n=4) == 2 * 8 * 5
    memory = peak_memory(torch.device("cpu"))
    assert memory["peak_memory_mib"] > 10 and "RSS" in memory["peak_memory_kind"]


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_flops_per_sample_counts_a_convolution_under_every_autograd_mode(mode):
    """The diffusion samplers run under torch.inference_mode, where a convolution arrives undecomposed (it once counted 0)."""
    from genzoo.metrics.resources import flops_per_sample

    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    context = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]

    def sample(n, generator=None):
        with context():
            return conv(torch.randn(n, 3, 6, 6, generator=generator))

    assert flops_per_sample(sample, n=2) == 2 * (4 * 3 * 3 * 3) * (6 * 6)  # 2 per multiply-add, every output position


def test_peak_memory_resets_between_runs():
    # In a fresh process: a long test session's freed memory would hide a new allocation.
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from genzoo.metrics.resources import peak_memory, reset_peak_memory\n"
        "reset_peak_memory()\n"
        "big = torch.ones(256 * 2**20, dtype=torch.uint8)\n"
        "high = peak_memory(torch.device('cpu'))['peak_memory_mib']\n"
        "del big\n"
        "reset_peak_memory()\n"
        "low = peak_memory(torch.device('cpu'))['peak_memory_mib']\n"
        "print(high - low)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) > 200  # the 256 MiB peak is gone after the reset
