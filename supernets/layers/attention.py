"""Multi-head causal self-attention with elastic embed dim and number of heads.

Head-dim rule: the size of one head is FIXED (``head_dim``, by default the largest embed
dim divided by the largest head count: 128 / 4 = 32 for the default transformer space);
``n_head`` heads use an attention width of ``n_head * head_dim``, independent of ``d_model``.
So the head count changes parameters and compute (as in HAT / whittle), and every head keeps
its weights across archs: head ``i`` is always the same rows of the shared tensor.

Weight layout, chosen so the active slice is a prefix: the fused QKV projection has rows
ordered head-major, ``[head, (q|k|v), head_dim]``, so ``n_head`` active heads are the first
``3 * n_head * head_dim`` rows and the input features the first ``d_model`` columns; the
output projection takes the first ``d_model`` rows and ``n_head * head_dim`` columns.
``PlainSelfAttention`` is the same computation on ordinary ``nn.Linear`` layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .banks import BankFactory
from .elastic import ElasticLinear, _check


def _attend(qkv: torch.Tensor, n_head: int, head_dim: int) -> torch.Tensor:
    """(B, T, n_head*3*head_dim) head-major fused QKV -> (B, T, n_head*head_dim), causal."""
    b, t, _ = qkv.shape
    q, k, v = qkv.view(b, t, n_head, 3, head_dim).permute(3, 0, 2, 1, 4).unbind(0)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(b, t, n_head * head_dim)


class ElasticSelfAttention(nn.Module):
    """Causal self-attention; ``set_active(d_model, n_head)`` picks the sub-network."""

    def __init__(
        self,
        d_max: int,
        heads_max: int,
        head_dim: int | None = None,
        bias: bool = True,
        factory: BankFactory | None = None,
    ) -> None:
        super().__init__()
        self.d_max, self.heads_max = int(d_max), int(heads_max)
        self.head_dim = int(head_dim) if head_dim else max(1, self.d_max // self.heads_max)
        inner = self.heads_max * self.head_dim
        self.qkv = ElasticLinear(self.d_max, 3 * inner, bias, factory, role="attn_qkv")
        self.proj = ElasticLinear(inner, self.d_max, bias, factory, role="attn_out")
        self.set_active(self.d_max, self.heads_max)

    def set_active(self, d_model: int, n_head: int) -> None:
        self.d_model = _check("d_model", d_model, 1, self.d_max)
        self.n_head = _check("n_head", n_head, 1, self.heads_max)
        inner = self.n_head * self.head_dim
        self.qkv.set_active(self.d_model, 3 * inner)
        self.proj.set_active(inner, self.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_attend(self.qkv(x), self.n_head, self.head_dim))

    def to_plain(self) -> PlainSelfAttention:
        plain = PlainSelfAttention(self.d_model, self.n_head, self.head_dim, self.qkv.has_bias)
        p = next(self.parameters())
        plain.to(device=p.device, dtype=p.dtype)
        self.qkv.copy_to(plain.qkv)
        self.proj.copy_to(plain.proj)
        return plain

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}/{self.d_max}, n_head={self.n_head}/{self.heads_max}, head_dim={self.head_dim}"


class PlainSelfAttention(nn.Module):
    """Causal multi-head self-attention on ordinary ``nn.Linear`` layers (head-major QKV)."""

    def __init__(self, d_model: int, n_head: int, head_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.n_head, self.head_dim = int(n_head), int(head_dim)
        inner = self.n_head * self.head_dim
        self.qkv = nn.Linear(d_model, 3 * inner, bias=bias)
        self.proj = nn.Linear(inner, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_attend(self.qkv(x), self.n_head, self.head_dim))


__all__ = ["ElasticSelfAttention", "PlainSelfAttention"]
