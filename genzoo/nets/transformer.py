"""A decoder-only causal transformer over token sequences (GPT-style, pre-LayerNorm), with a key/value cache.

Used by the autoregressive transformer families: over raw 8-bit pixels (Parmar et al. 2018,
"Image Transformer"; Chen et al. 2020, "iGPT") and over a VQ-VAE's codes. Attention is
torch.nn.functional.scaled_dot_product_attention with a causal mask, so position t attends
to positions <= t only. With a cache (`new_cache()`), each call processes only the new
positions and keeps every layer's keys and values: sampling L tokens then costs L
single-position passes instead of L passes over growing prefixes. Imports only torch.
"""

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    """Pre-LN block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, dim=2))
        if cache is not None and "k" in cache:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        # new queries at positions past..past+t-1 against keys 0..past+t-1: causal within the new block, all of the past
        past = k.shape[2] - t
        mask = None if t == 1 or past == 0 else torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=past == 0 and t > 1, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """(B, T) token ids -> (B, T, out_features) logits; position t sees tokens 0..t only.

    Args:
        vocab_size: input token ids are in [0, vocab_size).
        out_features: logits per position (e.g. 256 pixel levels).
        max_len: the longest sequence (learned position embeddings, one per position).
        d_model, n_layers, n_heads, mlp_ratio, dropout: the usual sizes; d_model divisible by n_heads.
    Raises:
        ValueError: d_model not divisible by n_heads, or a non-positive size.
    """

    def __init__(self, vocab_size: int, out_features: int, max_len: int, d_model: int = 64, n_layers: int = 4, n_heads: int = 4,
                 mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        if min(vocab_size, out_features, max_len, d_model, n_layers, n_heads, mlp_ratio) < 1 or d_model % n_heads:
            raise ValueError(f"the transformer needs positive sizes and d_model divisible by n_heads, got d_model={d_model}, "
                             f"n_heads={n_heads}, n_layers={n_layers}, max_len={max_len}")
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Parameter(torch.zeros(max_len, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out_features)
        self.apply(_init)
        nn.init.normal_(self.position_embedding, std=0.02)

    def new_cache(self) -> list[dict]:
        """An empty key/value cache (one dict per layer) for incremental calls of `forward`."""
        return [{} for _ in self.blocks]

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token plus position embeddings (B, T, d_model) of tokens (B, T) at positions start..start+T-1."""
        if start + tokens.shape[1] > self.max_len:
            raise ValueError(f"positions up to {start + tokens.shape[1]} exceed the transformer's max_len {self.max_len}")
        return self.token_embedding(tokens) + self.position_embedding[start : start + tokens.shape[1]]

    def logits_from_embeddings(self, h: torch.Tensor, cache: list[dict] | None = None) -> torch.Tensor:
        """The blocks and the head on embeddings h (B, T, d_model): logits (B, T, out_features)."""
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else cache[i])
        return self.head(self.ln_f(h))

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, steps: int, generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """prefix (B, P) followed by `steps` tokens drawn one at a time from the softmax of the last position: (B, P + steps).

        Draws use `generator` on the CPU (the same tokens on every device). With `use_cache`
        each step runs the one new position against the cached keys and values; without, the
        whole sequence again (the same tokens under a seed, up to float rounding in the logits).
        """
        tokens, cache = prefix, self.new_cache() if use_cache else None
        step = tokens
        for _ in range(steps):
            probs = torch.softmax(self(step, cache)[:, -1].float().cpu(), dim=1)
            new = torch.multinomial(probs, 1, generator=generator).to(prefix.device)
            tokens = torch.cat([tokens, new], 1)
            step = new if use_cache else tokens
        return tokens

    def forward(self, tokens: torch.Tensor, cache: list[dict] | None = None) -> torch.Tensor:
        """Logits (B, T, out_features) of tokens (B, T); with a cache, the tokens continue the cached sequence."""
        start = cache[0]["k"].shape[2] if cache is not None and "k" in cache[0] else 0
        return self.logits_from_embeddings(self.embed(tokens, start), cache)


def _init(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
