"""``CellNet``: the NAS-Bench-201 cell network over ``cell_space`` (4 nodes, 6 edges, 5 ops).

Network (NB201's macro skeleton, sized for 8x8 digits / 28x28 MNIST on CPU): 3x3 stem conv +
BN, ``stages`` stages of ``cells_per_stage`` cells (every cell the same architecture), a
residual reduction block (stride 2, channels doubled) between stages, BN + ReLU, global
average pool and a linear classifier. A cell has nodes 0..3; node j sums op(node i) over
the edges i -> j in NB201 order ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``; node 3 is the output.
Ops: ``none`` (zeros), ``skip_connect``, ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU, conv, BN),
``avg_pool_3x3``.

Options of the cell's mixed op (soft mode, ``archlab.supernets.soft.ops``):

- ``partial_channels=K`` (PC-DARTS, Xu et al. ICLR 2020): each edge's ops see the first
  ``C/K`` channels, the rest bypass the op, then channels are shuffled in ``K`` groups;
  ``K=1`` is the plain mixed op. The discrete subnet uses the same partial connection.
- ``edge_norm=True`` (PC-DARTS): each node weights its incoming edges by a softmax over edge
  parameters (``soft_extra_parameters``, learned with the architecture; all NB201 edges are
  kept, so they steer training only).
- ``conv_sharing="entangled"`` (TangleNAS): the 1x1 conv of an edge is the centre of its 3x3
  conv (one weight, one BN); the mixed op runs ONE conv on the normalised mix of the two
  kernels' zero-padded weights, scaled by their joint probability (BN would undo a scale on
  the weight). ``"separate"``: each conv op has its own weights (DARTS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.library import NB201_OPS, cell_space

from ..base import Supernet
from ..layers.conv import ElasticBatchNorm2d, ElasticConv2d
from ..layers.elastic import ElasticLinear
from ..soft.ops import Probs, SoftConv2d, kernel_mask, register_soft
from .plain import PlainSubnet, register_plain

EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
CONV_SHARING = ("separate", "entangled")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet; PC-DARTS after the mix)."""
    if groups == 1:
        return x
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ConvBN(nn.Module):
    """ReLU, conv (elastic kernel 1 or 3 when entangled), BN: NB201's ``nor_conv``."""

    def __init__(self, c: int, kernel: int, factory: Any) -> None:
        super().__init__()
        self.conv = ElasticConv2d(c, c, kernel, factory=factory, role="conv")
        self.bn = ElasticBatchNorm2d(c, factory=factory)

    def forward(self, x: torch.Tensor, kernel: int | None = None) -> torch.Tensor:
        if kernel is not None and kernel != self.conv.kernel:
            self.conv.set_active(self.conv.in_max, self.conv.out_max, kernel)
        return self.bn(self.conv(F.relu(x)))


@cache
def _convbn_keys() -> tuple[str, ...]:
    """The state-dict keys of a plain (default-bank) ``ConvBN``, relative to it."""
    return tuple(ConvBN(1, 1, None).state_dict())


def _modules_for(op: str | None, entangled: bool) -> tuple[bool, bool]:
    """Whether an edge of ``op`` (``None``: every op, the supernet) needs ``conv3``, ``conv1``."""
    conv3 = op is None or op == "nor_conv_3x3"
    conv1 = op == "nor_conv_1x1" or (op is None and not entangled)
    return conv3, conv1


class MixedEdge(nn.Module):
    """The five ops of one edge on ``c // partial`` channels; discrete or mixed forward.

    ``op=None`` (the supernet) builds the modules of every op. ``op=name`` (a plain subnet)
    builds only what ``name`` runs: ``conv3`` for ``nor_conv_3x3``; ``conv1`` for
    ``nor_conv_1x1`` (when entangled, the supernet's shared 3x3 runs at its 1x1 centre, and
    the plain edge holds that centre as its own 1x1 ``conv1``); nothing with parameters for
    ``none``, ``skip_connect`` and ``avg_pool_3x3``. ``pruned`` names the modules a full edge
    has and this one does not: their keys in a state dict (the supernet's, or subnets exported
    before edges were pruned) are dropped on load, any other stray key still fails; an
    entangled 1x1 edge given the shared 3x3's keys and no ``conv1`` ones (the supernet's state,
    or a subnet exported when such edges kept the whole 3x3) takes its centre.
    """

    def __init__(self, c: int, entangled: bool, partial: int, factory: Any, op: str | None = None) -> None:
        super().__init__()
        if c % partial:
            raise ArchlabError(f"partial_channels: {partial} does not divide the {c} channels of a cell")
        if op is not None and op not in NB201_OPS:
            raise ArchlabError(f"cell edge op: {op!r}; allowed: {', '.join(NB201_OPS)}")
        self.partial, self.entangled, cp = partial, entangled, c // partial
        need3, need1 = _modules_for(op, entangled)
        full3, full1 = _modules_for(None, entangled)
        self.conv3 = ConvBN(cp, 3, factory) if need3 else None
        self.conv1 = ConvBN(cp, 1, factory) if need1 else None
        self.pruned = tuple(name for name, full, kept in (("conv3", full3, need3), ("conv1", full1, need1))
                            if full and not kept)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.op = op if op is not None else NB201_OPS[-1]
        self.probs: torch.Tensor | None = None  # soft mode: weights of NB201_OPS

    def _conv(self, name: str) -> ConvBN:
        module = self.conv3 if name == "conv3" else self.conv1
        if module is None:
            raise ArchlabError(f"cell edge: op {self.op!r} needs {name}, which this pruned plain edge does not hold")
        return module

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if self.entangled and self.conv1 is not None and not any(k.startswith(f"{prefix}conv1.") for k in state_dict):
            for key in _convbn_keys():  # the shared 3x3 of an entangled 1x1 edge: keep its centre
                value = state_dict.pop(f"{prefix}conv3.{key}", None)
                if value is not None:
                    state_dict[f"{prefix}conv1.{key}"] = value[..., 1:2, 1:2] if value.dim() == 4 else value
        for name in self.pruned:  # an old export's weights of the modules this edge pruned
            for key in _convbn_keys():
                state_dict.pop(f"{prefix}{name}.{key}", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "none":
            return torch.zeros_like(x)
        if name == "skip_connect":
            return x
        if name == "avg_pool_3x3":
            return self.pool(x)
        if name == "nor_conv_3x3":
            return self._conv("conv3")(x, 3 if self.entangled else None)
        if self.entangled and self.conv1 is None:  # the supernet: the shared 3x3 at its centre
            return self._conv("conv3")(x, 1)
        return self._conv("conv1")(x)

    def _mix(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for i, name in enumerate(NB201_OPS):
            if self.entangled and name in ("nor_conv_1x1", "nor_conv_3x3"):
                continue
            out = out + p[i].to(x.dtype) * self._run(name, x)
        if self.entangled:  # one conv on the normalised mix of the 1x1 (centre) and 3x3 kernels
            pair = p[NB201_OPS.index("nor_conv_1x1") : NB201_OPS.index("nor_conv_3x3") + 1]
            mass = pair.sum()
            conv3 = self._conv("conv3")
            conv = conv3.conv
            conv.soft = SoftConv2d(None, None, kernel_mask(3, pair / mass.clamp_min(1e-12), (1, 3)))
            try:
                out = out + mass.to(x.dtype) * conv3.bn(conv(F.relu(x)))
            finally:
                conv.soft = None
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part, rest = (x, None) if self.partial == 1 else x.split([x.shape[1] // self.partial,
                                                                   x.shape[1] - x.shape[1] // self.partial], 1)
        y = self._run(self.op, part) if self.probs is None else self._mix(part, self.probs)
        if rest is None:
            return y
        return channel_shuffle(torch.cat([y, rest], 1), self.partial)


class SearchCell(nn.Module):
    """Four nodes, six mixed edges; ``edge_weights`` (soft, edge normalisation) scale edges.

    ``ops`` (one per edge, a plain subnet): each edge holds only its op's modules."""

    def __init__(self, c: int, entangled: bool, partial: int, factory: Any,
                 ops: Sequence[str] | None = None) -> None:
        super().__init__()
        per_edge: Sequence[str | None] = [None] * len(EDGES) if ops is None else ops
        if len(per_edge) != len(EDGES):
            raise ArchlabError(f"cell: {len(per_edge)} edge ops given, the cell has {len(EDGES)} edges")
        self.edges = nn.ModuleList(MixedEdge(c, entangled, partial, factory, op) for op in per_edge)
        self.edge_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            total = None
            for e, (dst, src) in enumerate(EDGES):
                if dst != j:
                    continue
                y = self.edges[e](nodes[src])
                if self.edge_weights is not None:
                    y = self.edge_weights[e].to(y.dtype) * y
                total = y if total is None else total + y
            nodes.append(total)  # type: ignore[arg-type]
        return nodes[3]


class Reduction(nn.Module):
    """Residual reduction block: ReLU-conv3x3(s2)-BN, ReLU-conv3x3-BN, + avgpool-conv1x1 shortcut."""

    def __init__(self, cin: int, cout: int, factory: Any) -> None:
        super().__init__()
        self.a = ElasticConv2d(cin, cout, 3, 2, factory=factory, role="conv")
        self.bn_a = ElasticBatchNorm2d(cout, factory=factory)
        self.b = ConvBN(cout, 3, factory)
        self.short = ElasticConv2d(cin, cout, 1, factory=factory, role="conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.bn_a(self.a(F.relu(x))))
        s = self.short(F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False))
        return y + s


class _Body(nn.Module):
    """Stem, cells and reductions, head: shared by the supernet and the plain subnet
    (``ops``: the plain subnet's edge ops; its edges hold only those ops' modules)."""

    def __init__(self, dims: Mapping[str, Any], factory: Any = None, ops: Sequence[str] | None = None) -> None:
        super().__init__()
        c, cin = int(dims["channels"]), int(dims["in_channels"])
        entangled = dims.get("conv_sharing", "separate") == "entangled"
        partial = int(dims.get("partial_channels", 1))
        self.stem = ElasticConv2d(cin, c, 3, factory=factory, role="conv")
        self.stem_bn = ElasticBatchNorm2d(c, factory=factory)
        blocks: list[nn.Module] = []
        for s in range(int(dims["stages"])):
            if s > 0:
                blocks.append(Reduction(c, 2 * c, factory))
                c *= 2
            blocks.extend(SearchCell(c, entangled, partial, factory, ops)
                          for _ in range(int(dims["cells_per_stage"])))
        self.blocks = nn.ModuleList(blocks)
        self.last_bn = ElasticBatchNorm2d(c, factory=factory)
        self.classifier = ElasticLinear(c, int(dims["num_classes"]), True, factory, role="head")

    def cells(self) -> list[SearchCell]:
        return [b for b in self.blocks if isinstance(b, SearchCell)]

    def set_ops(self, ops: list[str]) -> None:
        for cell in self.cells():
            for edge, op in zip(cast("list[MixedEdge]", cell.edges), ops):  # ModuleList: untyped items
                edge.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(self.stem(x))
        for b in self.blocks:
            x = b(x)
        return self.classifier(F.relu(self.last_bn(x)).mean((2, 3)))


class CellNet(Supernet):
    """NB201 cell supernet: ``net(images (B, C, H, W)) -> logits (B, num_classes)``."""

    family = "cell"
    requires = {"edges": {"op": True}}

    def __init__(self, space: SearchSpace | None = None, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 8, channels: int = 8, stages: int = 3, cells_per_stage: int = 1,
                 conv_sharing: str = "separate", partial_channels: int = 1, edge_norm: bool = False,
                 sharing: str = "entangled", sharing_options: Mapping[str, Any] | None = None,
                 roles: Any = None) -> None:
        space = space if space is not None else self.default_space()
        super().__init__(space, sharing=sharing, sharing_options=sharing_options, roles=roles)
        edges = space.params["edges"]
        if edges.count != len(EDGES) or set(edges.params["op"].values()) - set(NB201_OPS):  # type: ignore[attr-defined]
            raise ArchlabError(f"cell: space needs edges=PerLayer({len(EDGES)}, op=Choice(...)) with ops among "
                               f"{', '.join(NB201_OPS)}")
        if conv_sharing not in CONV_SHARING:
            raise ArchlabError(f"conv_sharing: {conv_sharing!r}; allowed: {', '.join(CONV_SHARING)}")
        if int(partial_channels) < 1:
            raise ArchlabError(f"partial_channels: {partial_channels!r}; allowed: an integer >= 1")
        self.dims = {"num_classes": int(num_classes), "in_channels": int(in_channels), "image_size": int(image_size),
                     "channels": int(channels), "stages": int(stages), "cells_per_stage": int(cells_per_stage),
                     "conv_sharing": conv_sharing, "partial_channels": int(partial_channels),
                     "edge_norm": bool(edge_norm)}
        self.body = _Body(self.dims, self.bank_factory)
        n_cells = len(self.body.cells())
        self.edge_beta = nn.Parameter(torch.zeros(n_cells, len(EDGES))) if edge_norm else None
        self.set_arch(space.sample(0))

    @classmethod
    def default_space(cls, **kwargs: Any) -> SearchSpace:
        """``cell_space``: 6 edges x the 5 NB201 ops (15,625 cells)."""
        return cell_space(**kwargs)

    def soft_extra_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters that are not choices of the space (edge normalisation)."""
        return [self.edge_beta] if self.edge_beta is not None else []

    def _apply_arch(self, arch: Arch) -> None:
        for cell in self.body.cells():
            cell.edge_weights = None
            for edge in cast("list[MixedEdge]", cell.edges):  # ModuleList: untyped items
                edge.probs = None
        self.body.set_ops([str(e["op"]) for e in arch["edges"]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def _extract(self) -> PlainCellNet:
        if self.sharing != "entangled":
            raise ArchlabError(f"cell: extraction needs sharing='entangled', not {self.sharing!r}")
        plain = PlainCellNet(self.dims, self.arch.to_dict())
        p = next(self.parameters())
        # strictly: the plain edges drop the modules their ops do not run and an entangled 1x1
        # edge takes its shared 3x3's centre (MixedEdge), every other key must match
        plain.to(device=p.device, dtype=p.dtype).body.load_state_dict(self.body.state_dict(), strict=True)
        return plain

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        n = self.dims["image_size"]
        return torch.randn(batch_size, self.dims["in_channels"], n, n, generator=g).to(self._device())


@register_plain
class PlainCellNet(PlainSubnet):
    """A standalone NB201 cell network of one architecture (``arch["edges"][i]["op"]``).

    Each edge holds only the modules its op runs: ``nor_conv_3x3`` its 3x3 ReLU-conv-BN,
    ``nor_conv_1x1`` its 1x1 one (with ``conv_sharing="entangled"``: the centre of the
    supernet's shared 3x3), ``none`` / ``skip_connect`` / ``avg_pool_3x3`` no parameters. The stem,
    reductions and head are kept whole. The architecture is kept as given: an edge whose
    output never reaches the cell output (a dead edge) still holds its op's weights; dead
    edges are not pruned. State dicts of subnets saved before edges were pruned (which carry
    every op's weights) still load: the keys of the pruned modules are dropped (an entangled
    1x1 edge's shared 3x3 is cut to its centre), any other unexpected or missing key is an error.
    """

    family = "cell"

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        if arch is None:
            raise ArchlabError("cell subnet: needs its architecture (edges and ops)")
        self.body = _Body(self.dims, ops=[str(e["op"]) for e in arch["edges"]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_soft("cell")
def soft_cell(net: CellNet, probs: Probs) -> None:
    """Every edge mixes its ops (``NB201_OPS`` order) by its slot's probabilities."""
    values = net.space.params["edges"].params["op"].values()  # type: ignore[attr-defined]
    for c, cell in enumerate(net.body.cells()):
        for e, edge in enumerate(cell.edges):
            p = probs[f"edges.{e}.op"]
            full = torch.zeros(len(NB201_OPS), dtype=p.dtype, device=p.device)
            edge.probs = full.index_add(0, torch.tensor([NB201_OPS.index(v) for v in values], device=p.device), p)
        if net.edge_beta is not None:  # softmax over the incoming edges of each node
            w = torch.zeros_like(net.edge_beta[c])
            for j in range(1, 4):
                idx = [e for e, (dst, _) in enumerate(EDGES) if dst == j]
                w = w.index_copy(0, torch.tensor(idx, device=w.device), F.softmax(net.edge_beta[c, idx], -1))
            cell.edge_weights = w
