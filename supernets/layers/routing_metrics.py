"""Routing metrics of MoE layers and active compute per token.

``layer_metrics(record)``: one layer's last dispatch (``module.last_routing``) as numbers:
``load`` (fraction of the tokens each expert processed), ``load_cv`` (coefficient of
variation of the per-expert token counts, population std / mean), ``experts_per_token``
(mean real experts per token) and ``experts_hist`` (fraction of tokens with 0, 1, 2, ...
real experts), ``dropped`` (fraction of tokens that lost an assignment to a capacity limit),
``entropy`` (mean router entropy, nats; ``None`` without a learned router), ``null_share``
(share of the chosen slots that went to null experts) and ``aux`` (auxiliary losses).

``measure_routing(net, batches)`` averages them over batches (inference mode, no gradients);
``flat_metrics`` turns that into ``{"routing.<stat>": float, "routing.layers.<i>.<stat>": ...}``
for training logs and study records; ``active_costs`` counts parameters and MACs per token
on a plain (extracted) transformer, counting only the experts tokens used (the measured
mean, so data-dependent routers get their expected value on the batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .moe import RoutingRecord, _RoutedFFN


def layer_metrics(record: RoutingRecord) -> dict[str, Any]:
    """The routing numbers of one dispatch (see the module docstring)."""
    d = record.dispatch
    n, e = max(d.n_tokens, 1), d.n_experts
    counts = torch.bincount(d.experts, minlength=e).double().cpu().numpy()
    per_token = torch.bincount(d.tokens, minlength=d.n_tokens).cpu().numpy()
    mean = counts.mean()
    hist = np.bincount(per_token, minlength=e + 1) / n
    chosen = float(per_token.sum())
    nulls = float(d.null_slots.sum()) if d.null_slots is not None else 0.0
    entropy = None
    if d.probs is not None:
        p = d.probs.double()
        entropy = float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())
    return {
        "router": record.router,
        "load": (counts / n).tolist(),
        "load_cv": float(counts.std() / mean) if mean > 0 else 0.0,
        "experts_per_token": float(per_token.mean()) if d.n_tokens else 0.0,
        "experts_hist": hist.tolist(),
        "dropped": float(d.dropped.float().mean()) if d.dropped is not None else 0.0,
        "entropy": entropy,
        "null_share": nulls / (nulls + chosen) if nulls + chosen > 0 else 0.0,
        "aux": {k: float(v) for k, v in d.aux.items()},
    }


def routed_layers(net: nn.Module) -> list[tuple[int, _RoutedFFN]]:
    """``(layer index, MoE module)`` of every token-routed FFN under ``net``, in order."""
    # the modules with both attributes are the routed FFNs (ElasticMoEFFN, PlainMoEFFN)
    return cast("list[tuple[int, _RoutedFFN]]",
                [(int(getattr(m, "layer_index", 0)), m) for m in net.modules()
                 if hasattr(m, "last_routing") and hasattr(m, "routing_state")])


def current_metrics(net: nn.Module) -> dict[int, dict[str, Any]]:
    """``{layer: layer_metrics}`` of the layers that routed in ``net``'s last forward."""
    return {i: layer_metrics(m.last_routing) for i, m in routed_layers(net) if m.last_routing is not None}


def _mean(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if isinstance(present[0], dict):
        return {k: _mean([v.get(k) for v in present]) for k in present[0]}
    if isinstance(present[0], list):
        width = max(len(v) for v in present)
        return np.mean([v + [0.0] * (width - len(v)) for v in present], axis=0).tolist()
    if isinstance(present[0], str):
        return present[0]
    return float(np.mean(present))


@torch.no_grad()
def measure_routing(net: nn.Module, batches: Iterable[torch.Tensor]) -> dict[int, dict[str, Any]]:
    """``{layer: metrics}`` averaged over ``net(x)`` for each input ``x`` of ``batches``
    (inference mode; the training flag is restored)."""
    was = net.training
    net.eval()
    seen: dict[int, list[dict[str, Any]]] = {}
    try:
        for x in batches:
            for m in (m for _, m in routed_layers(net)):
                m.last_routing = None
            net(x)
            for i, met in current_metrics(net).items():
                seen.setdefault(i, []).append(met)
    finally:
        net.train(was)
    return {i: {k: _mean([m[k] for m in mets]) for k in mets[0]} for i, mets in seen.items()}


def flat_metrics(layers: dict[int, dict[str, Any]], prefix: str = "routing") -> dict[str, float]:
    """Flat float metrics: means over the routed layers (``routing.load_cv``, ...,
    ``routing.aux.<name>``, ``routing.layers_routed``) and per layer (``routing.layers.<i>.load.<e>``,
    ``routing.layers.<i>.experts_hist.<j>``, ``routing.layers.<i>.<stat>``). Empty without routing."""
    out: dict[str, float] = {}
    if not layers:
        return out
    stats = ("load_cv", "experts_per_token", "dropped", "entropy", "null_share")
    for s in stats:
        vals = [m[s] for m in layers.values() if m.get(s) is not None]
        if vals:
            out[f"{prefix}.{s}"] = float(np.mean(vals))
    aux: dict[str, list[float]] = {}
    for m in layers.values():
        for k, v in (m.get("aux") or {}).items():
            aux.setdefault(k, []).append(v)
    out.update({f"{prefix}.aux.{k}": float(np.mean(v)) for k, v in aux.items()})
    out[f"{prefix}.layers_routed"] = float(len(layers))
    for i, m in layers.items():
        for s in stats:
            if m.get(s) is not None:
                out[f"{prefix}.layers.{i}.{s}"] = float(m[s])
        out.update({f"{prefix}.layers.{i}.load.{e}": float(v) for e, v in enumerate(m["load"])})
        out.update({f"{prefix}.layers.{i}.experts_hist.{j}": float(v) for j, v in enumerate(m["experts_hist"])})
    return out


def _linear_macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


@torch.no_grad()
def active_costs(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Parameters and MACs per token of a plain transformer LM (``PlainTransformerLM``) that
    count only the experts tokens used: each MoE layer contributes its measured mean
    ``experts_per_token`` (on ``x``) times one expert's parameters/MACs, plus its router.
    Keys: ``params`` (all), ``active_params``, ``macs_per_token``, ``experts_per_token``
    (mean over routed layers; 0 without routing)."""
    layers = measure_routing(model, [x])
    total = sum(p.numel() for p in model.parameters())
    context = int(x.shape[1])
    macs = 0.0
    inactive = 0.0
    routed = [m for _, m in routed_layers(model)]
    ept_by_module = {id(m): layers[i]["experts_per_token"] for i, m in routed_layers(model) if i in layers}
    # PlainBlocks (archlab.supernets.families, a room above this one: not imported), read by name
    for block in cast("Iterable[Any]", model.blocks):
        attn = block.attn
        inner = attn.proj.in_features
        macs += _linear_macs(attn) + 2 * context * inner
        moe = getattr(block, "moe", None)
        if moe is None:
            macs += block.ffn_in.in_features * block.ffn_in.out_features + block.ffn_out.in_features * block.ffn_out.out_features
            continue
        per_expert = _linear_macs(moe.experts[0])
        expert_params = sum(p.numel() for p in moe.experts[0].parameters())
        ept = ept_by_module.get(id(moe), float(moe.top_k))
        macs += ept * per_expert + _linear_macs(moe.router) + _linear_macs(moe.rule)
        macs += sum(b.numel() for b in moe.rule.buffers())  # a fixed router's F.linear
        if "recurrent" in moe.router_name:
            gru = moe.routing_state.shared.get("recurrent_gru")
            if gru is not None:
                macs += 3 * (gru.input_size + gru.hidden_size) * gru.hidden_size
        inactive += (moe.n_experts - ept) * expert_params
    tok = cast(nn.Embedding, model.tok)
    d = tok.embedding_dim
    macs += d * tok.num_embeddings  # output head (tied or not)
    ept_all = [layers[i]["experts_per_token"] for i in layers]
    return {"params": float(total), "active_params": float(total - inactive), "macs_per_token": float(macs),
            "experts_per_token": float(np.mean(ept_all)) if ept_all else 0.0, "routed_layers": float(len(routed))}


__all__ = ["active_costs", "current_metrics", "flat_metrics", "layer_metrics", "measure_routing", "routed_layers"]
