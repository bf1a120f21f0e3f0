"""Vector quantisation with a learned codebook (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Each D-dimensional vector of an encoder's output map is replaced by its nearest codebook
entry (Euclidean); the decoder sees the entries, the gradient passes the quantisation
unchanged (the straight-through estimator, z_q = z_e + sg(z_q - z_e)). The codebook learns in
one of two ways:
- "ema": each entry is the exponential moving average of the encoder vectors assigned to it
  (the paper's appendix A.1; Laplace smoothing of the counts as in Razavi et al. 2019);
- "loss": gradient descent on the codebook loss |sg(z_e) - e|^2.
Both add the commitment loss beta |z_e - sg(e)|^2 that keeps the encoder near its codes.
Dead-code restarts: an entry whose moving-average count falls below `dead_threshold` is
moved onto a random encoder vector of the current batch (Dhariwal et al. 2020, Jukebox).
Imports only torch.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

UPDATES = ("ema", "loss")


class VectorQuantizer(nn.Module):
    """(B, D, H, W) encoder maps -> nearest codebook entries, codes and losses.

    Args:
        num_codes: K, entries in the codebook.
        code_dim: D, their dimension (the encoder's output channels).
        update: "ema" or "loss" (see the module docstring).
        beta: weight of the commitment loss (the paper: 0.25).
        decay: the EMA's gamma (update "ema"; the paper: 0.99).
        dead_threshold: restart entries whose moving-average count falls below this (0: off).
            The count is tracked for both updates.
        eps: Laplace smoothing of the EMA counts.
    Raises:
        ValueError: an unknown update, num_codes or code_dim < 1, beta < 0, decay outside [0, 1).
    """

    def __init__(self, num_codes: int, code_dim: int, update: str = "ema", beta: float = 0.25, decay: float = 0.99,
                 dead_threshold: float = 1e-3, eps: float = 1e-5):
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"unknown codebook update '{update}': choose one of {', '.join(UPDATES)}")
        if num_codes < 1 or code_dim < 1 or beta < 0 or not 0 <= decay < 1 or dead_threshold < 0:
            raise ValueError(f"the codebook needs num_codes, code_dim >= 1, beta >= 0, decay in [0, 1) and dead_threshold >= 0; "
                             f"got {num_codes}, {code_dim}, {beta}, {decay}, {dead_threshold}")
        self.num_codes, self.code_dim, self.update = num_codes, code_dim, update
        self.beta, self.decay, self.dead_threshold, self.eps = beta, decay, dead_threshold, eps
        embedding = torch.randn(num_codes, code_dim) / math.sqrt(code_dim)
        if update == "ema":
            self.register_buffer("embedding", embedding)
            self.register_buffer("ema_sum", embedding.clone())
        else:
            self.embedding = nn.Parameter(embedding)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # entries restarted so far

    def codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """The nearest entry's index (B, H, W) int64 for each vector of z_e (B, D, H, W)."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.T + self.embedding.pow(2).sum(1))
        return distances.argmin(1).view(z_e.shape[0], *z_e.shape[2:])

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """The entries (B, D, H, W) of codes (B, H, W)."""
        return F.embedding(codes, self.embedding).permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Quantise z_e (B, D, H, W): (z_q with the straight-through gradient (B, D, H, W), codes (B, H, W),
        {"commitment": beta |z_e - sg(e)|^2, "codebook": |sg(z_e) - e|^2 (update "loss"; 0 for "ema"),
        "perplexity": exp of the entropy of this batch's code frequencies}).

        In training mode it also updates the EMA codebook and counts and restarts dead entries.
        """
        codes = self.codes(z_e)
        z_q = self.embed(codes)
        one_hot = F.one_hot(codes.flatten(), self.num_codes).type(z_e.dtype)  # (N, K)
        if self.training:
            self._update(z_e.detach(), one_hot)
        commitment = self.beta * F.mse_loss(z_e, z_q.detach())
        codebook = F.mse_loss(z_q, z_e.detach()) if self.update == "loss" else z_e.new_zeros(())
        freq = one_hot.mean(0)
        perplexity = torch.exp(-(freq * torch.log(freq + 1e-10)).sum())
        z_st = z_e + (z_q - z_e).detach()  # forward: z_q; backward: the identity to z_e
        return z_st, codes, {"commitment": commitment, "codebook": codebook, "perplexity": perplexity.detach()}

    @torch.no_grad()
    def _update(self, z_e: torch.Tensor, one_hot: torch.Tensor) -> None:
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
        counts = one_hot.sum(0)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.update == "ema":
            self.ema_sum.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
            self.embedding.copy_(self.ema_sum / smoothed.unsqueeze(1))
        if self.dead_threshold > 0:
            dead = self.ema_count < self.dead_threshold
            if dead.any():
                picks = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
                self.embedding.data[dead] = picks
                if self.update == "ema":
                    self.ema_sum[dead] = picks
                self.ema_count[dead] = 1.0
                self.restarts += int(dead.sum())
