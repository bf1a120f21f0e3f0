import pytest
import torch

from genzoo.nets import build_decoder, build_encoder


@pytest.mark.parametrize("net", ["conv", "mlp"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_encoder_and_decoder_shapes(net, shape):
    enc = build_encoder(net, shape, out_features=10)
    dec = build_decoder(net, shape, in_features=5, out_channels=2 * shape[0])
    assert enc(torch.zeros(4, *shape)).shape == (4, 10)
    assert dec(torch.zeros(4, 5)).shape == (4, 2 * shape[0], *shape[1:])


def test_conv_net_rejects_an_image_it_cannot_halve_enough():
    with pytest.raises(ValueError, match="divisible by 8, got 28x28"):
        build_encoder("conv", (1, 28, 28), 10, channels=(16, 32, 64))
    build_encoder("conv", (3, 32, 32), 10, channels=(16, 32, 64))  # 32 halves three times


def test_unknown_net_is_rejected():
    with pytest.raises(ValueError, match="unknown net 'resnet'"):
        build_encoder("resnet", (1, 28, 28), 10)
