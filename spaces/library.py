"""Ready-made search spaces: transformer LM (dense, or with token-routed mixture-of-experts
FFNs: ``moe_transformer_lm_space``), MobileNetV3 (Once-for-All), MLP, HAT, cells.

Each function returns a fresh ``SearchSpace``; its arguments set the allowed values, so the
same shape can be made smaller for a quick CPU run or as large as the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cells import CellGraph
from .params import Choice, IntRange, PerLayer
from .space import SearchSpace

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def transformer_lm_space(
    name: str = "transformer_lm",
    n_layer: tuple[int, int] = (1, 4),
    d_model: Sequence[int] = (64, 96, 128),
    n_head: Sequence[int] = (2, 4),
    ffn: Sequence[int] = (128, 256, 512),
) -> SearchSpace:
    """Decoder-only transformer: depth, width (``d_model``), per-layer heads and FFN size."""
    return SearchSpace(
        name,
        n_layer=IntRange(*n_layer),
        d_model=Choice(*d_model),
        layers=PerLayer("n_layer", n_head=Choice(*n_head), ffn=Choice(*ffn)),
    )


def moe_transformer_lm_space(
    name: str = "moe_transformer_lm",
    n_layer: tuple[int, int] = (1, 4),
    d_model: Sequence[int] = (64, 96, 128),
    n_head: Sequence[int] = (2, 4),
    ffn: Sequence[int] = (64, 128, 256),
    moe_experts: Sequence[int] = (1, 2, 4),
    moe_top_k: Sequence[int] = (1, 2),
    moe_router: Sequence[str] | None = None,
    moe_top_p: Sequence[float] | None = None,
    moe_capacity: Sequence[float] | None = None,
    moe_null: Sequence[int] | None = None,
) -> SearchSpace:
    """``transformer_lm_space`` plus a token-routed mixture-of-experts FFN per layer:
    ``layers[i].moe_experts`` (number of experts; 1 is a dense FFN, so this also chooses which
    layers are MoE) and ``layers[i].moe_top_k`` (experts per token; a top-k above the layer's
    expert count runs as that count, so every architecture is valid). ``ffn`` is the width of
    each expert. Optional per-layer routing choices (left out when ``None``): ``moe_router``
    (router families, names of ``archlab.supernets.routers``), ``moe_top_p`` (``top_p``'s
    threshold), ``moe_capacity`` (capacity factor) and ``moe_null`` (``null_experts``' null
    experts). Built by ``TransformerLM``."""
    routing = {name: Choice(*values) for name, values in (
        ("moe_router", moe_router), ("moe_top_p", moe_top_p), ("moe_capacity", moe_capacity), ("moe_null", moe_null),
    ) if values is not None}
    return SearchSpace(
        name,
        n_layer=IntRange(*n_layer),
        d_model=Choice(*d_model),
        layers=PerLayer(
            "n_layer",
            n_head=Choice(*n_head),
            ffn=Choice(*ffn),
            moe_experts=Choice(*moe_experts),
            moe_top_k=Choice(*moe_top_k),
            **routing,
        ),
    )


def mobilenet_v3_space(
    name: str = "mobilenet_v3",
    n_stages: int = 5,
    depth: Sequence[int] = (2, 3, 4),
    kernel: Sequence[int] = (3, 5, 7),
    expand: Sequence[int] = (3, 4, 6),
    width_mult: Sequence[float] | None = None,
) -> SearchSpace:
    """MobileNetV3-like CNN as in Once-for-All: ``n_stages`` stages, each with its own depth
    and a kernel size and expand ratio per block; optionally a global width multiplier."""
    extra = {"width_mult": Choice(*width_mult)} if width_mult else {}
    return SearchSpace(
        name,
        (),  # no constraints (given positionally: ``extra`` holds parameters only)
        **extra,
        stages=PerLayer(
            n_stages,
            depth=Choice(*depth),
            blocks=PerLayer("depth", kernel=Choice(*kernel), expand=Choice(*expand)),
        ),
    )


def ofa_mobilenet_v3_space() -> SearchSpace:
    """The Once-for-All MobileNetV3 space: 5 stages x depth {2,3,4} x (kernel {3,5,7}, expand {3,4,6})."""
    return mobilenet_v3_space("ofa_mobilenet_v3")


def mlp_space(
    name: str = "mlp",
    n_layer: tuple[int, int] = (1, 4),
    width: Sequence[int] = (32, 64, 128, 256),
    activation: Sequence[str] | None = None,
) -> SearchSpace:
    """MLP: depth and a width per hidden layer; optionally a categorical activation."""
    extra = {"activation": Choice(*activation)} if activation else {}
    return SearchSpace(name, (), n_layer=IntRange(*n_layer), **extra, layers=PerLayer("n_layer", width=Choice(*width)))


def hat_transformer_space() -> SearchSpace:
    """The HAT SuperTransformer space (WMT'14 En-De): 6 encoder layers with FFN and heads per
    layer, embed dims for encoder and decoder, decoder depth 1..6 with FFN, heads,
    encoder-decoder heads and arbitrary encoder-decoder attention (-1, 1, 2) per layer."""
    return SearchSpace(
        "hat_wmt14",
        encoder_embed_dim=Choice(512, 640),
        decoder_embed_dim=Choice(512, 640),
        encoder_layers=PerLayer(6, ffn=Choice(1024, 2048, 3072), heads=Choice(4, 8)),
        decoder_n_layer=IntRange(1, 6),
        decoder_layers=PerLayer(
            "decoder_n_layer",
            ffn=Choice(1024, 2048, 3072),
            heads=Choice(4, 8),
            ende_heads=Choice(4, 8),
            ende_attn=Choice(-1, 1, 2),
        ),
    )


def cell_space(name: str = "cell", n_edges: int = 6, ops: Sequence[str] = NB201_OPS) -> SearchSpace:
    """A cell of ``n_edges`` edges, one operation each (NAS-Bench-201 shape: 5^6 = 15,625). When
    ``n_edges`` is ``n (n - 1) / 2`` the space declares its DAG of ``n`` nodes (edges in
    NAS-Bench-201's order, ``none`` cutting an edge; ``archlab.spaces.cells``)."""
    return SearchSpace(name, edges=PerLayer(n_edges, op=Choice(*ops))).with_graph(CellGraph.for_edges(n_edges, ops))


__all__ = [
    "NB201_OPS",
    "cell_space",
    "hat_transformer_space",
    "mlp_space",
    "mobilenet_v3_space",
    "moe_transformer_lm_space",
    "ofa_mobilenet_v3_space",
    "transformer_lm_space",
]
