"""The EMA of a net's weights (genzoo/models/ema.py) and standing BatchNorm statistics."""

import pytest
import torch
from torch import nn

from genzoo.models.ema import ema_copy, standing_statistics, update_ema


def test_the_average_follows_the_warm_up_decay_and_copies_buffers():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))
    ema = ema_copy(net, decay=0.9)
    start = net[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(3.0)
    update_ema(ema, net)  # AveragedModel's first update copies the net (n becomes 1)
    update_ema(ema, net)  # n = 1: an average of equal weights
    assert torch.allclose(ema.module[0].weight, start + 1.0)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    update_ema(ema, net)  # n = 2: d = min(0.9, 3 / 12)
    d = 3 / 12
    assert torch.allclose(ema.module[0].weight, d * (start + 1.0) + (1 - d) * (start + 2.0))
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))


def test_standing_statistics_are_the_average_of_the_batch_moments():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.1))
    with torch.no_grad():
        net[1].running_mean.fill_(100.0)  # stale statistics, e.g. copied from another net
        net[1].running_var.fill_(100.0)
    net.eval()
    inputs = [torch.randn(32, 3) * (i + 1) + i for i in range(3)]
    weight = net[0].weight.clone()
    standing_statistics(net, lambda i: (inputs[i],), batches=3)
    with torch.no_grad():
        hidden = [net[0](x) for x in inputs]
    assert torch.allclose(net[1].running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0), atol=1e-5)
    assert torch.allclose(net[1].running_var, torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0), atol=1e-4)
    assert net[1].momentum == 0.1 and not net.training and torch.equal(net[0].weight, weight)
    with pytest.raises(ValueError, match="batches >= 1"):
        standing_statistics(net, lambda i: (inputs[i],), batches=0)
