"""Likelihood in the field's unit: bits per dimension."""

import math


def bits_per_dim(nll_nats, num_dims: int):
    """Negative log-likelihood per image in nats -> bits per dimension.

    bits/dim = nll / (D ln 2) with D = C * H * W (e.g. 784 for 28x28x1). Works on floats
    and tensors. For 8-bit images, 8 bits/dim is the cost of a uniform model.

    Raises ValueError if num_dims <= 0.
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return nll_nats / (num_dims * math.log(2.0))
