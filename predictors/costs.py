"""Analytic per-layer cost features (MACs, parameters) of the known families.

A *cost model* turns the raw encoding matrix of a space (``space.encode_many``) into extra
columns, vectorised over rows: per-layer MACs and parameters and their totals. It finds its
inputs by feature name (``d_model``, ``layers.3.present``, ...), so it applies to any space of
the right shape, whatever its allowed values. Flat-column cost models do the same for plain
tables (the HAT latency CSVs). Units: MACs per example (per token for sequence models),
parameters as counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Columns = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class CostModel:
    """``fn(col, **kwargs) -> {name: column}``; ``requires`` are the feature names it reads
    (``{i}`` stands for a layer slot, checked for slot 0)."""

    name: str
    requires: tuple[str, ...]
    fn: Callable[..., dict[str, np.ndarray]]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, names: Sequence[str]) -> bool:
        have = set(names)
        return all(r.format(i=0) in have for r in self.requires)


COST_MODELS: dict[str, CostModel] = {}


def register_cost_model(name: str, requires: Sequence[str], **defaults: Any) -> Callable[..., Any]:
    """Decorator: add a cost model to ``COST_MODELS`` (tried in registration order)."""

    def deco(fn: Callable[..., dict[str, np.ndarray]]) -> Callable[..., dict[str, np.ndarray]]:
        COST_MODELS[name] = CostModel(name, tuple(requires), fn, dict(defaults))
        return fn

    return deco


def _slots(names: Sequence[str], prefix: str) -> int:
    n = 0
    while any(x.startswith(f"{prefix}.{n}.") for x in names):
        n += 1
    return n


def _present(col: Columns, names: Sequence[str], prefix: str, i: int, rows: int) -> np.ndarray:
    key = f"{prefix}.{i}.present"
    return col(key) if key in names else np.ones(rows)


def _layered(names: Sequence[str], col: Columns, prefix: str, rows: int,
             per_layer: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    macs_total = np.zeros(rows)
    params_total = np.zeros(rows)
    for i in range(_slots(names, prefix)):
        on = _present(col, names, prefix, i, rows)
        macs, params = per_layer(i)
        out[f"cost.{prefix}.{i}.macs"] = on * macs
        out[f"cost.{prefix}.{i}.params"] = on * params
        macs_total += on * macs
        params_total += on * params
    out[f"cost.{prefix}.macs"] = macs_total
    out[f"cost.{prefix}.params"] = params_total
    return out


@register_cost_model("transformer_lm", ("d_model", "layers.{i}.ffn", "layers.{i}.n_head"),
                     context=128, vocab_size=65, head_dim=0)
def _transformer_lm(col: Columns, names: Sequence[str], rows: int, context: int, vocab_size: int,
                    head_dim: int) -> dict[str, np.ndarray]:
    """``head_dim`` 0: heads split ``d_model``; else every head has ``head_dim`` (archlab's
    ``TransformerLM`` default: max d_model // max heads).

    Token-routed MoE layers (``layers.{i}.moe_experts`` E, ``layers.{i}.moe_top_k`` k, clipped
    to E; k is 1 when absent): MACs are the *active* ones per token, k experts' FFNs plus the
    router (``d * E`` when E > 1); parameters count all E experts and the router."""
    d = col("d_model")

    def layer(i: int) -> tuple[np.ndarray, np.ndarray]:
        ffn = col(f"layers.{i}.ffn")
        inner = d if not head_dim else col(f"layers.{i}.n_head") * head_dim
        experts = col(f"layers.{i}.moe_experts") if f"layers.{i}.moe_experts" in names else np.ones(rows)
        top_k = col(f"layers.{i}.moe_top_k") if f"layers.{i}.moe_top_k" in names else np.ones(rows)
        top_k = np.minimum(top_k, experts)
        router = np.where(experts > 1, d * experts, 0.0)
        # per token: q,k,v,o projections, scores and weighted sum over the context, FFN
        macs = 4 * d * inner + 2 * context * inner + 2 * d * ffn * top_k + router
        params = 4 * d * inner + (2 * d * ffn + ffn + d) * experts + 8 * d + router
        return macs, params

    out = _layered(names, col, "layers", rows, layer)
    heads = sum(_present(col, names, "layers", i, rows) * col(f"layers.{i}.n_head")
                for i in range(_slots(names, "layers")))
    out["cost.heads"] = np.asarray(heads, dtype=np.float64)
    out["cost.head.macs"] = d * vocab_size
    out["cost.macs"] = out["cost.layers.macs"] + out["cost.head.macs"]
    out["cost.params"] = out["cost.layers.params"] + 2 * d * vocab_size + context * d
    return out


@register_cost_model("mlp", ("layers.{i}.width",), in_features=64, num_classes=10)
def _mlp(col: Columns, names: Sequence[str], rows: int, in_features: int, num_classes: int) -> dict[str, np.ndarray]:
    n = _slots(names, "layers")
    width = [col(f"layers.{i}.width") for i in range(n)]
    on = [_present(col, names, "layers", i, rows) for i in range(n)]
    out: dict[str, np.ndarray] = {}
    prev = np.full(rows, float(in_features))
    total = np.zeros(rows)
    for i in range(n):
        macs = on[i] * prev * width[i]
        out[f"cost.layers.{i}.macs"] = macs
        out[f"cost.layers.{i}.params"] = on[i] * (prev + 1) * width[i]
        total += macs
        prev = np.where(on[i] > 0, width[i], prev)
    out["cost.head.macs"] = prev * num_classes
    out["cost.macs"] = total + out["cost.head.macs"]
    out["cost.params"] = sum(out[f"cost.layers.{i}.params"] for i in range(n)) + (prev + 1) * num_classes
    return out


@register_cost_model("mobilenet", ("stages.{i}.blocks.0.kernel", "stages.{i}.blocks.0.expand"),
                     image_size=224, channels=(24, 40, 80, 112, 160), stem=16)
def _mobilenet(col: Columns, names: Sequence[str], rows: int, image_size: int,
               channels: Sequence[int], stem: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    total_m = np.zeros(rows)
    total_p = np.zeros(rows)
    res = image_size / 4.0
    c_in = float(stem)
    for s in range(_slots(names, "stages")):
        c_out = float(channels[min(s, len(channels) - 1)])
        res = max(res / 2.0, 1.0) if s else res
        prefix = f"stages.{s}.blocks"
        for b in range(_slots(names, prefix)):
            on = _present(col, names, prefix, b, rows)
            k = col(f"{prefix}.{b}.kernel")
            mid = (c_in if b == 0 else c_out) * col(f"{prefix}.{b}.expand")
            cin = c_in if b == 0 else c_out
            params = cin * mid + mid * k * k + mid * c_out
            out[f"cost.{prefix}.{b}.macs"] = on * params * res * res
            out[f"cost.{prefix}.{b}.params"] = on * params
            total_m += on * params * res * res
            total_p += on * params
        c_in = c_out
    out["cost.macs"] = total_m
    out["cost.params"] = total_p
    return out


@register_cost_model("hat", ("encoder_embed_dim", "decoder_embed_dim", "decoder_layers.{i}.ffn"),
                     src_len=30, tgt_len=30)
def _hat(col: Columns, names: Sequence[str], rows: int, src_len: int, tgt_len: int) -> dict[str, np.ndarray]:
    de, dd = col("encoder_embed_dim"), col("decoder_embed_dim")
    enc = _layered(names, col, "encoder_layers", rows,
                   lambda i: (4 * de * de + 2 * de * col(f"encoder_layers.{i}.ffn"),
                              4 * de * de + 2 * de * col(f"encoder_layers.{i}.ffn")))

    def dec_layer(i: int) -> tuple[np.ndarray, np.ndarray]:
        ffn = col(f"decoder_layers.{i}.ffn")
        ende = np.abs(col(f"decoder_layers.{i}.ende_attn"))
        macs = 8 * dd * dd + 2 * dd * ffn + 2 * src_len * dd * ende
        return macs, 8 * dd * dd + 2 * dd * ffn

    dec = _layered(names, col, "decoder_layers", rows, dec_layer)
    out = {**enc, **dec}
    out["cost.macs"] = src_len * enc["cost.encoder_layers.macs"] + tgt_len * dec["cost.decoder_layers.macs"]
    out["cost.params"] = enc["cost.encoder_layers.params"] + dec["cost.decoder_layers.params"]
    return out


# flat tables ------------------------------------------------------------------------------
HAT_COLUMNS = (
    "encoder_embed_dim", "encoder_layer_num", "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg", "decoder_embed_dim", "decoder_layer_num",
    "decoder_ffn_embed_dim_avg", "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg", "decoder_arbitrary_ende_attn_avg",
)


@register_cost_model("hat_columns", HAT_COLUMNS, src_len=30, tgt_len=30)
def _hat_columns(col: Columns, names: Sequence[str], rows: int, src_len: int, tgt_len: int) -> dict[str, np.ndarray]:
    """HAT's averaged columns: per-layer cost times the layer count."""
    de, ne, fe = col("encoder_embed_dim"), col("encoder_layer_num"), col("encoder_ffn_embed_dim_avg")
    dd, nd, fd = col("decoder_embed_dim"), col("decoder_layer_num"), col("decoder_ffn_embed_dim_avg")
    ende = np.abs(col("decoder_arbitrary_ende_attn_avg"))
    enc_layer = 4 * de * de + 2 * de * fe
    dec_self = 4 * dd * dd
    dec_cross = 4 * dd * dd + 2 * src_len * dd * ende
    dec_ffn = 2 * dd * fd
    return {
        "cost.encoder.macs": ne * enc_layer * src_len,
        "cost.decoder.self.macs": nd * dec_self,
        "cost.decoder.cross.macs": nd * dec_cross,
        "cost.decoder.ffn.macs": nd * dec_ffn,
        "cost.decoder.macs": nd * (dec_self + dec_cross + dec_ffn),
        "cost.decoder.heads": nd * (col("decoder_self_attention_heads_avg") + col("decoder_ende_attention_heads_avg")),
        "cost.macs": ne * enc_layer * src_len + tgt_len * nd * (dec_self + dec_cross + dec_ffn),
        "cost.params": ne * enc_layer + nd * (8 * dd * dd + dec_ffn),
    }


def find_cost_model(names: Sequence[str]) -> str | None:
    """Name of the first registered cost model whose inputs ``names`` provide, or ``None``."""
    for name, cm in COST_MODELS.items():
        if cm.matches(names):
            return name
    return None


def cost_features(name: str, matrix: np.ndarray, names: Sequence[str],
                  options: Mapping[str, Any] | None = None) -> tuple[list[str], np.ndarray]:
    """Apply cost model ``name`` to ``matrix`` (rows x ``names``): (new names, new columns)."""
    cm = COST_MODELS[name]
    kwargs = {**cm.defaults, **(options or {})}
    index = {n: j for j, n in enumerate(names)}
    m = np.asarray(matrix, dtype=np.float64)

    def col(key: str) -> np.ndarray:
        return m[:, index[key]]

    out = cm.fn(col, list(names), m.shape[0], **kwargs)
    keys = sorted(out)
    cols = [np.broadcast_to(np.asarray(out[k], dtype=np.float64), (m.shape[0],)) for k in keys]
    return keys, (np.stack(cols, axis=1) if cols else np.zeros((m.shape[0], 0)))
