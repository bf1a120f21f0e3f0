"""Plain nn.Modules (no losses, schedules or Lightning); they import only torch."""

from torch import nn

from genzoo.nets.conv import ConvDecoder, ConvEncoder
from genzoo.nets.mlp import MLPDecoder, MLPEncoder

NETS = ("conv", "mlp")


def build_encoder(net: str, image_shape, out_features: int, channels=(32, 64), hidden_dim: int = 256) -> nn.Module:
    """Encoder of kind `net` ("conv" or "mlp"): (B, C, H, W) -> (B, out_features).

    Raises ValueError for an unknown kind or an image shape the net cannot take.
    """
    if net == "conv":
        return ConvEncoder(image_shape, out_features, channels, hidden_dim)
    if net == "mlp":
        return MLPEncoder(image_shape, out_features, (2 * hidden_dim, hidden_dim))
    raise ValueError(f"unknown net '{net}': choose one of {', '.join(NETS)}")


def build_decoder(net: str, image_shape, in_features: int, out_channels: int, channels=(32, 64), hidden_dim: int = 256) -> nn.Module:
    """Decoder of kind `net` ("conv" or "mlp"): (B, in_features) -> (B, out_channels, H, W).

    Raises ValueError for an unknown kind or an image shape the net cannot take.
    """
    if net == "conv":
        return ConvDecoder(image_shape, in_features, out_channels, channels, hidden_dim)
    if net == "mlp":
        return MLPDecoder(image_shape, in_features, out_channels, (2 * hidden_dim, hidden_dim))
    raise ValueError(f"unknown net '{net}': choose one of {', '.join(NETS)}")


__all__ = ["NETS", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "build_decoder", "build_encoder"]
