"""Soft mixing of the built-in families (``archlab.supernets.soft.ops``): which choice sets which
dimension of which layer. Each applier gets the net (already at its largest shape) and the
slot probabilities, and sets every layer's soft binding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from archlab.core.errors import ArchlabError

from ..soft.ops import (
    Probs,
    SoftActivation,
    SoftBatchNorm2d,
    SoftConv2d,
    SoftDepth,
    SoftEmbedding,
    SoftLayerNorm,
    SoftLinear,
    kernel_mask,
    register_soft,
    width_mask,
)
from .convnet import expanded, scale_channels


class _SoftMLP:
    """Soft forward of ``MLPNet``: depth mix of ``act(hidden[i](x))`` then the classifier."""

    def __init__(self, depth: SoftDepth, act: Any) -> None:
        self.depth, self.act = depth, act

    def __call__(self, net: Any, x: torch.Tensor) -> torch.Tensor:
        x = self.depth(net.hidden, x.flatten(1), lambda layer, h: self.act(layer(h)), net.classifier.in_max)
        return net.classifier(x)


@register_soft("mlp")
def soft_mlp(net: Any, probs: Probs) -> None:
    p = net.space.params
    widths = p["layers"].params["width"].values()
    if "activation" in p:
        act: Any = SoftActivation(probs["activation"], [net.acts[a] for a in p["activation"].values()])
    else:
        act = net.acts[net.dims["activation"]]
    previous = None
    for i, layer in enumerate(net.hidden):
        m = width_mask(layer.out_max, [probs[f"layers.{i}.width"]], [widths])
        layer.soft = SoftLinear(m, previous)
        previous = m
    net.classifier.soft = SoftLinear(None, None)
    net.soft = _SoftMLP(SoftDepth(probs["n_layer"], p["n_layer"].values()), act)


@register_soft("transformer_lm")
def soft_transformer(net: Any, probs: Probs) -> None:
    if net.has_moe:
        raise ArchlabError("soft architectures: token-routed MoE choices (moe_experts, moe_top_k) are not "
                           "mixed; search a dense transformer_lm space")
    p = net.space.params
    layer_p = p["layers"].params
    d_vals, heads, ffns = p["d_model"].values(), layer_p["n_head"].values(), layer_p["ffn"].values()
    md = width_mask(net.tok.dim_max, [probs["d_model"]], [d_vals])
    net.tok.soft = SoftEmbedding(md)
    net.pos.soft = SoftEmbedding(md)
    ln = SoftLayerNorm(probs["d_model"], d_vals)
    for i, block in enumerate(net.blocks):
        att, ph, hd = block.attn, [probs[f"layers.{i}.n_head"]], block.attn.head_dim
        rows = width_mask(att.qkv.out_max, ph, [heads], lambda h, hd=hd: 3 * h * hd)
        cols = width_mask(att.proj.in_max, ph, [heads], lambda h, hd=hd: h * hd)
        att.qkv.soft, att.proj.soft = SoftLinear(rows, md), SoftLinear(md, cols)
        mf = width_mask(block.ffn_in.out_max, [probs[f"layers.{i}.ffn"]], [ffns])
        block.ffn_in.soft, block.ffn_out.soft = SoftLinear(mf, md), SoftLinear(md, mf)
        block.ln1.soft = block.ln2.soft = ln
    net.blocks.soft = SoftDepth(probs["n_layer"], p["n_layer"].values())
    net.ln_f.soft = ln
    if net.head is not None:
        net.head.soft = SoftLinear(None, md)


@register_soft("convnet")
def soft_convnet(net: Any, probs: Probs) -> None:
    p = net.space.params
    block_p = p["stages"].params["blocks"].params
    wm: list[torch.Tensor] = [probs["width_mult"]] if net.has_width_mult else []
    wm_vals: list[Sequence[Any]] = [p["width_mult"].values()] if net.has_width_mult else []

    def channels(size: int, base: int) -> torch.Tensor | None:
        if not wm:
            return None
        return width_mask(size, wm, wm_vals, lambda w: scale_channels(base, w))

    stem = channels(net.stem.out_max, net.dims["stem_channels"])
    net.stem.soft, net.stem_bn.soft = SoftConv2d(stem, None), SoftBatchNorm2d(stem)
    cin_mask, cin_base = stem, net.dims["stem_channels"]
    for s, (stage, base) in enumerate(zip(net.stages, net.dims["stage_channels"])):
        cout = channels(stage[0].project.out_max, base)
        for j, block in enumerate(stage):
            b_in = cin_base if j == 0 else base
            mid = width_mask(block.expand.out_max, [*wm, probs[f"stages.{s}.blocks.{j}.expand"]],
                             [*wm_vals, block_p["expand"].values()],
                             lambda *c, b_in=b_in: expanded(scale_channels(b_in, c[0]) if wm else b_in, c[-1]))
            km = kernel_mask(block.depthwise.kernel_max, probs[f"stages.{s}.blocks.{j}.kernel"],
                             block_p["kernel"].values())
            block.expand.soft = SoftConv2d(mid, cin_mask if j == 0 else cout)
            block.bn1.soft = block.bn2.soft = SoftBatchNorm2d(mid)
            block.depthwise.soft = SoftConv2d(mid, None, km)
            block.project.soft, block.bn3.soft = SoftConv2d(cout, mid), SoftBatchNorm2d(cout)
        stage.soft = SoftDepth(probs[f"stages.{s}.depth"], p["stages"].params["depth"].values())
        cin_mask, cin_base = cout, base
    net.head.soft, net.head_bn.soft = SoftConv2d(None, None), SoftBatchNorm2d(None)
    net.classifier.soft = SoftLinear(None, None)
