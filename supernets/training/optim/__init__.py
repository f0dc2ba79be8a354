"""Optimizers and learning-rate schedules for supernet training (registries by name).

``SliceAdamW`` is the AdamW the trainer uses for supernets: a weight that only part of is
active in a step (the first rows/columns of an entangled bank) is updated only on that part.

Why: a subnet's forward reads ``W[:o, :i]`` of a shared tensor ``W``. Plain autograd then
materialises a full-size ``W.grad`` (zeros outside the slice) and plain AdamW updates all of
``W``: entries the step's subnet never used still move, by their momentum and by weight
decay, and every step pays for zero-filling and updating the whole supernet. ``SliceAdamW``
updates only the entries the step used, with the same AdamW arithmetic (the same torch
kernel, ``fused``/``foreach`` as chosen): it is torch AdamW on the active slice, and leaves
the rest of the tensor and of its moments untouched (the "lazy" Adam of
``torch.optim.SparseAdam``: moments of an entry decay only when it is used; the bias
correction follows the parameter's step count, which counts the steps it was used in, as
for a parameter plain AdamW skips because its ``.grad`` is ``None``).

How: while a ``SliceAdamW`` is attached to a supernet (it attaches itself on construction;
the last one made for a bank serves it), each weight bank's forward (``EntangledBank``, the
mixture banks of ``archlab.supernets.layers.mos``: any bank with ``slice_params``) under grad mode asks
its ``SliceTracker`` for the slice:

- ``leaf_views=True`` (default): the slice is a leaf tensor viewing ``W``'s storage (made
  once per bank and slice, reused by later forwards); its gradient lands in the view's
  ``.grad`` (only the slice's size) and ``W.grad`` stays ``None``. ``step`` (or ``grads()``)
  gathers these gradients per parameter and updates that box. A parameter a subnet uses
  whole is returned as itself and gets an ordinary ``.grad``.
- ``leaf_views=False`` (DDP, AMP grad scaling: they need ordinary ``.grad``): the slice is the
  ordinary autograd slice, the tracker only records its box; ``step`` updates the box from
  ``W.grad``. Same result, without the speed-up.

Several slices of one tensor in one step (sandwich training: several subnets, one update)
are summed into their bounding box, and the box is updated; its entries no subnet used get a
zero gradient there (torch AdamW's update for them). The fused kernel needs dense tensors:
for a box that is not (``W[:o, :i]`` with ``i`` below the full width) it works on dense
copies kept in a per-parameter buffer (``workspace_bytes()``): the parameter is copied in and
back each step; its moments stay in the buffer while the parameter keeps the same box, and
go back into the state when the box changes or when anything reads ``optimizer.state`` (or
``state_dict()``, or calls ``sync_state()``), so the state always reads current.

So with leaf views, read gradients through ``optimizer.grads()`` (``clip_gradients`` finds
them), not ``p.grad``; ``optimizer.release()`` detaches it from the banks (and writes held
gradients into ``.grad``). The state dict has torch AdamW's format (checkpoints move between
the two).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.adamw import adamw as _adamw_fn

OptimizerFactory = Callable[..., torch.optim.Optimizer]

Box = tuple[tuple[int, int], ...]  # (start, stop) per dimension


def _box(index: Sequence[slice], shape: Sequence[int]) -> Box:
    """``index`` (one slice per leading dim, step 1) as (start, stop) per dim of ``shape``."""
    out = []
    for d, size in enumerate(shape):
        if d < len(index):
            start, stop, step = index[d].indices(size)
            if step != 1:
                raise ValueError(f"SliceAdamW: slice step {step} is not supported (dim {d})")
            out.append((start, max(start, stop)))
        else:
            out.append((0, size))
    return tuple(out)


def _slices(box: Box, origin: Box | None = None) -> tuple[slice, ...]:
    if origin is None:
        return tuple(slice(a, b) for a, b in box)
    return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(box, origin))


def _union(boxes: Sequence[Box]) -> Box:
    return tuple((min(d[0] for d in dims), max(d[1] for d in dims)) for dims in zip(*boxes))


def _is_full(box: Box, shape: Sequence[int]) -> bool:
    return all(a == 0 and b == n for (a, b), n in zip(box, shape))


class _Slot:
    """One partly used tensor of a bank for the active slice: the leaf ``view`` the forward
    gets and its ``box`` in ``p``; ``stamp``: the tracker generation it was last listed in."""

    __slots__ = ("box", "p", "stamp", "view")

    def __init__(self, p: torch.Tensor, box: Box, view: torch.Tensor) -> None:
        self.p, self.box, self.view, self.stamp = p, box, view, -1


class _Views:
    """What a bank serves for one index while a tracker is attached."""

    __slots__ = ("b", "dynamic", "index", "slots", "w")


class _BankCache:
    """A bank's served views, per index value (an architecture's index recurs: few distinct
    slices per bank), valid while the tracker, the parameters' storage and ``requires_grad``
    stay the same (``key``)."""

    __slots__ = ("by_value", "key", "last", "token")

    def __init__(self, token: object, key: Any) -> None:
        self.token, self.key, self.last, self.by_value = token, key, None, {}


class SliceTracker:
    """Serves the slices of the entangled banks a ``SliceAdamW`` trains (see the module
    docstring) and keeps what the forwards used until the optimizer's next ``step`` or
    ``zero_grad``.

    Leaf views are made once per bank and slice and reused by every later forward with that
    slice (the same architecture, or another with the same width there); each step's
    gradient is taken from them (and cleared) by the optimizer."""

    def __init__(self, params: Iterable[torch.Tensor], leaf_views: bool = True) -> None:
        self.ids = {id(p) for p in params}
        self.leaf_views = bool(leaf_views)
        self.token = object()
        self.generation = 0
        self.pending: list[_Slot] = []  # leaf views used since the last gather
        self.recorded: dict[int, tuple[torch.Tensor, Box]] = {}  # leaf_views=False: union of used boxes

    def take(self, bank: Any, index: tuple[slice, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight[lead + index], bias[lead + index[0]])`` of ``bank`` (its ``slice_params``;
        ``lead``: its ``slice_lead`` leading dimensions, taken whole) for a forward under grad mode."""
        w, b = bank.slice_params()
        lead = bank.slice_lead
        if lead:
            index = (slice(None),) * lead + index
        if not self.leaf_views:
            return self._record(w, index), (self._record(b, index[:lead + 1]) if b is not None else None)
        key = (w.data_ptr(), w.requires_grad, None if b is None else (b.data_ptr(), b.requires_grad))
        cache = bank._slice_views
        if cache is None or cache.token is not self.token or cache.key != key:
            cache = bank._slice_views = _BankCache(self.token, key)
        c = cache.last
        if c is None or c.index is not index:
            value = tuple((sl.start, sl.stop, sl.step) for sl in index)
            c = cache.by_value.get(value)
            if c is None:
                c = cache.by_value[value] = self._build(w, b, index, lead)
            c.index = index
            cache.last = c
        if c.dynamic:  # a parameter this optimizer does not train: ordinary slices
            return w[index], (b[index[:lead + 1]] if b is not None else None)
        if c.slots:
            gen = self.generation
            for s in c.slots:
                if s.stamp != gen:
                    s.stamp = gen
                    self.pending.append(s)
        return c.w, c.b

    def _build(self, w: torch.Tensor, b: torch.Tensor | None, index: tuple[slice, ...], lead: int = 0) -> _Views:
        c = _Views()
        c.index, c.slots, c.dynamic = index, [], False
        out: list[torch.Tensor | None] = []
        for p, idx in ((w, index), (b, index[:lead + 1])):
            if p is None:
                out.append(None)
            elif not p.requires_grad:
                out.append(p[idx])  # frozen: no gradient, no graph
            elif id(p) not in self.ids:
                c.dynamic = True
                out.append(None)
            else:
                view = p.detach()[idx]
                if view.shape == p.shape:
                    out.append(p)  # used whole: the parameter itself, with an ordinary .grad
                else:
                    view.requires_grad_(True)
                    c.slots.append(_Slot(p, _box(idx, p.shape), view))
                    out.append(view)
        c.w, c.b = out
        return c

    def _record(self, p: torch.Tensor, index: tuple[slice, ...]) -> torch.Tensor:
        if p.requires_grad and id(p) in self.ids:
            box = _box(index, p.shape)
            seen = self.recorded.get(id(p))
            self.recorded[id(p)] = (p, box if seen is None or seen[1] == box else _union([seen[1], box]))
        return p[index]

    def clear(self) -> None:
        """Forget what was used (and the gradients of the leaf views)."""
        for s in self.pending:
            s.view.grad = None
        self.pending = []
        self.recorded = {}
        self.generation += 1


# SliceAdamW instances attached to banks (clip_gradients finds slice gradients through them)
_ATTACHED: weakref.WeakSet[Any] = weakref.WeakSet()


class SliceAdamW(torch.optim.AdamW):
    """AdamW that updates only the used slices of a supernet's entangled weights.

    ``SliceAdamW(params, model, lr=..., ..., leaf_views=True)``: ``params`` (or parameter
    groups) and the AdamW options as for ``torch.optim.AdamW``; ``model`` the supernet (any
    module: every weight bank in it with ``slice_params`` in ``params`` is attached: entangled and
    mixture banks).
    Parameters outside entangled banks, and those a step uses whole, are updated exactly as
    by ``torch.optim.AdamW`` (same functional AdamW, same state). See the module docstring.
    """

    def __init__(self, params: Any, model: nn.Module, *args: Any, leaf_views: bool = True, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        if any(g.get("differentiable") for g in self.param_groups):
            raise ValueError("SliceAdamW: differentiable=True is not supported")
        tracked = [p for g in self.param_groups for p in g["params"] if not torch.is_complex(p)]
        self.tracker = SliceTracker(tracked, leaf_views)
        # per parameter: (param, box, gradient of the box, slot or None) gathered from the tracker
        self._boxes: dict[int, tuple[torch.Tensor, Box, torch.Tensor, _Slot | None]] = {}
        self._banks: list[Any] = []
        self._buffers: dict[int, torch.Tensor] = {}  # per parameter: room for dense copies of a box
        self._plans: dict[tuple[int, Box | None], tuple[Any, ...]] = {}  # see _plan
        # per parameter whose box moments live in its dense buffer: (box, state views, dense views)
        self._resident: dict[int, tuple[Box, list[torch.Tensor], list[torch.Tensor]]] = {}
        from ...layers.banks import WeightBank

        ref = weakref.ref(self.tracker)
        for m in model.modules():
            sliced = m.slice_params() if isinstance(m, WeightBank) else None
            if sliced is not None and id(sliced[0]) in self.tracker.ids:
                m._slice_tracker = ref
                m._slice_views = None
                self._banks.append(weakref.ref(m))
        if self._banks:
            _ATTACHED.add(self)

    @property
    def leaf_views(self) -> bool:
        return self.tracker.leaf_views

    @property  # type: ignore[override]
    def state(self) -> Any:
        """torch's optimizer state; reading it first writes back the moments a box keeps in the
        dense workspace between steps (see ``_update``), so it always shows current values."""
        self.sync_state()
        return self.__dict__["_state"]

    @state.setter
    def state(self, value: Any) -> None:
        self.__dict__["_state"] = value

    def __setstate__(self, state: dict[str, Any]) -> None:  # also how load_state_dict installs a state
        state = dict(state)
        if "state" in state:
            state["_state"] = state.pop("state")
            self.__dict__["_resident"] = {}  # the moments held for the old state are void
            self.__dict__["_plans"] = {}
        super().__setstate__(state)

    def sync_state(self) -> None:
        """Write the moments held in dense workspaces back into the state tensors."""
        resident = self.__dict__.get("_resident")
        if resident:
            dst = [t for _, views, _ in resident.values() for t in views]
            src = [t for _, _, dense in resident.values() for t in dense]
            resident.clear()
            with torch.no_grad():
                _copy_all(dst, src)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "tracker"):  # after __init__ (which adds the first groups itself)
            for p in self.param_groups[-1]["params"]:
                if not torch.is_complex(p):
                    self.tracker.ids.add(id(p))

    def release(self) -> None:
        """Detach from the banks: they serve ordinary slices (ordinary ``.grad``) again.
        Gradients still held for the next step are written into ``.grad`` first."""
        self.materialize_grads()
        for ref in self._banks:
            bank = ref()
            if bank is not None and bank._slice_tracker is not None and bank._slice_tracker() is self.tracker:
                bank._slice_tracker = None
                bank._slice_views = None
        self._banks = []
        self.tracker.ids = set()
        _ATTACHED.discard(self)

    # gradients -------------------------------------------------------------------------
    def _gather(self) -> None:
        """Move the gradients of the leaf views used since the last call into ``_boxes``
        (param id -> (param, box, gradient of the box, slot or None))."""
        tracker = self.tracker
        pending = tracker.pending
        if not pending:
            return
        tracker.pending = []
        tracker.generation += 1
        boxes = self._boxes
        for s in pending:
            view = s.view
            g = view.grad
            if g is None:
                continue  # no gradient reached this slice
            view.grad = None
            p = s.p
            key = id(p)
            if key not in boxes:
                boxes[key] = (p, s.box, g, s)
                continue
            # a second slice of the same tensor (e.g. sandwich training): sum into the bounding box
            _, held_box, held, _ = boxes[key]
            box = _union([held_box, s.box])
            if box == held_box:
                held[_slices(s.box, box)] += g
                boxes[key] = (p, box, held, None)
            else:
                total = g.new_zeros([b - a for a, b in box])
                total[_slices(held_box, box)] += held
                total[_slices(s.box, box)] += g
                boxes[key] = (p, box, total, None)

    def _resolve(self) -> None:
        """Gather, then fold the box gradients of tensors that also have an ordinary ``.grad``
        (used whole by another forward of the step) into that ``.grad``."""
        self._gather()
        for key, (p, box, g, _) in list(self._boxes.items()):
            if p.grad is not None:
                p.grad[_slices(box)] += g
                del self._boxes[key]

    def grads(self) -> list[torch.Tensor]:
        """Every gradient of this step: the ``.grad`` of the parameters that have one and the
        gradients of the used slices (leaf views). Their norm is that of the full-size
        gradients; scaling them in place scales what ``step`` applies."""
        out = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return out + self.slice_grads()

    def slice_grads(self) -> list[torch.Tensor]:
        """The gradients of the used slices only (those ``.grad`` does not show)."""
        self._resolve()
        return [e[2] for e in self._boxes.values()]

    def materialize_grads(self) -> None:
        """Write the gradients held for the used slices into ordinary full-size ``.grad``
        (zeros elsewhere), e.g. to inspect them; ``step`` then updates whole tensors."""
        self._resolve()
        boxes, self._boxes = self._boxes, {}
        for p, box, g, _ in boxes.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad[_slices(box)] += g

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        self.tracker.clear()
        self._boxes = {}

    # update ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._resolve()
        boxes, self._boxes = self._boxes, {}
        recorded, self.tracker.recorded = self.tracker.recorded, {}
        for group in self.param_groups:
            items: list[tuple[torch.Tensor, Box | None, torch.Tensor, _Slot | None]] = []
            for p in group["params"]:
                grad = p.grad
                if grad is not None:
                    if grad.is_sparse:
                        raise RuntimeError("SliceAdamW does not support sparse gradients")
                    seen = recorded.get(id(p))  # leaf_views=False: update only the used box
                    if seen is not None and not _is_full(seen[1], p.shape):
                        items.append((p, seen[1], grad[_slices(seen[1])], None))
                    else:
                        items.append((p, None, grad, None))
                elif boxes:
                    held = boxes.get(id(p))
                    if held is not None:
                        items.append(held)
            if items:
                self._update(group, items)
        return loss

    def _update(self, group: dict[str, Any], items: list[tuple[torch.Tensor, Box | None, torch.Tensor, _Slot | None]]) -> None:
        """One functional AdamW call over ``items``. For the fused kernel a strided box works on
        dense copies (see ``_plan``): its parameter is copied in and back every step, its
        moments stay in the dense buffer for as long as the parameter keeps using the same
        box (written back when the box changes, and whenever the state is read), so a subnet
        trained for several steps copies a third of what it would otherwise."""
        fused = bool(group.get("fused"))
        amsgrad = bool(group["amsgrad"])
        params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
        back_dst: list[torch.Tensor] = []  # moments of a box no longer used: back into the state
        back_src: list[torch.Tensor] = []
        in_dst: list[torch.Tensor] = []  # into the dense buffers before the kernel
        in_src: list[torch.Tensor] = []
        out_dst: list[torch.Tensor] = []  # parameters back into the supernet after it
        out_src: list[torch.Tensor] = []
        has_complex = False
        plans = self._plans
        resident = self._resident
        for p, box, g, _ in items:
            key = id(p)
            plan = plans.get((key, box))
            if plan is None or plan[0] != p.data_ptr():
                plan = plans[(key, box)] = self._plan(p, box, group)
            _, tensors, strided_p, dense_p = plan
            params.append(tensors[0])
            exp_avgs.append(tensors[1])
            exp_avg_sqs.append(tensors[2])
            if amsgrad:
                max_sqs.append(tensors[3])
            steps.append(tensors[-1])
            held = resident.get(key)
            if held is not None and (not strided_p or held[0] != box):
                back_dst += held[1]
                back_src += held[2]
                del resident[key]
                held = None
            if strided_p:
                if held is None:  # moments too
                    in_dst += dense_p
                    in_src += strided_p
                    resident[key] = (box, strided_p[1:], dense_p[1:])
                else:
                    in_dst.append(dense_p[0])
                    in_src.append(strided_p[0])
                out_dst.append(strided_p[0])
                out_src.append(dense_p[0])
            if box is None:
                has_complex = has_complex or torch.is_complex(p)
            grads.append(g.contiguous() if fused and not g.is_contiguous() else g)
        if back_dst:  # before the copies in: a parameter's old and new box share its buffer
            _copy_all(back_dst, back_src)
        if in_dst:
            _copy_all(in_dst, in_src)
        beta1, beta2 = group["betas"]
        _adamw_fn(
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps,
            foreach=group.get("foreach"), capturable=bool(group.get("capturable")), differentiable=False,
            fused=group.get("fused"), grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None), has_complex=has_complex, amsgrad=amsgrad,
            beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=group["maximize"],
        )
        if out_dst:
            _copy_all(out_dst, out_src)

    def _plan(self, p: torch.Tensor, box: Box | None, group: dict[str, Any]) -> tuple[Any, ...]:
        """What the AdamW kernel gets for ``p`` (``box``: its used box; None: whole), cached
        per parameter and box (an architecture's boxes recur): ``(storage pointer, [param,
        exp_avg, exp_avg_sq, (max_exp_avg_sq,) step], strided, dense)``. For the fused kernel,
        non-dense views are replaced by dense tensors carved from a per-parameter buffer
        (``dense``, copied in from ``strided`` before the kernel and back after)."""
        state = self.__dict__["_state"][p]  # not through the property: no write-back mid-step
        if len(state) == 0:
            self._init_state(p, state, group)
        tensors = [p, state["exp_avg"], state["exp_avg_sq"]] + ([state["max_exp_avg_sq"]] if group["amsgrad"] else [])
        strided: list[torch.Tensor] = []
        dense: list[torch.Tensor] = []
        if box is not None:
            sl = _slices(box)
            tensors = [t.detach()[sl] for t in tensors]
            if group.get("fused") and not all(t.is_contiguous() for t in tensors):
                strided = tensors
                n = tensors[0].numel()
                buf = self._buffers.get(id(p))
                if buf is None or buf.numel() < n * len(tensors):
                    buf = self._buffers[id(p)] = torch.empty(n * len(tensors), dtype=p.dtype, device=p.device)
                dense = [piece.view(t.shape) for piece, t in zip(buf[:n * len(tensors)].split(n), tensors)]
                tensors = list(dense)
        return p.data_ptr(), [*tensors, state["step"]], strided, dense

    def workspace_bytes(self) -> int:
        """Bytes held for dense copies of strided boxes (fused kernel only), beyond the state."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # through __setstate__: plans and held moments dropped
        self._plans = {}  # they hold the replaced state tensors

    @staticmethod
    def _init_state(p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        # the state torch AdamW would create (same keys, dtypes and devices)
        if group.get("fused") or group.get("capturable"):
            state["step"] = torch.zeros((), dtype=torch.float32 if group.get("fused") else _scalar_dtype(),
                                        device=p.device)
        else:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # pragma: no cover - older torch
        for d, s in zip(dst, src):
            d.copy_(s)


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _adamw(groups: list[dict[str, Any]], cfg: Any, model: nn.Module | None = None,
           leaf_views: bool = True) -> torch.optim.Optimizer:
    from ...layers.banks import WeightBank

    if model is not None and any(isinstance(m, WeightBank) and m.slice_params() is not None for m in model.modules()):
        return SliceAdamW(groups, model, lr=cfg.lr, betas=(0.9, 0.99), leaf_views=leaf_views)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))  # ordinary modules


_adamw.slice_aware = True  # type: ignore[attr-defined]


def _sgd(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adamw": _adamw, "sgd": _sgd}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices and kernels (dim >= 2) get ``weight_decay``; biases, norms,
    other vectors and what a module lists in ``no_weight_decay()`` (a mixture bank's router
    and stacked expert biases) get none. Parameters shared by several modules appear once."""
    exempt = {id(p) for m in model.modules() if hasattr(m, "no_weight_decay") for p in m.no_weight_decay()}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in exempt else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: Any, *, leaf_views: bool = True) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` over ``model``'s parameters. ``adamw`` is a
    ``SliceAdamW`` attached to ``model`` (``leaf_views=False`` under DDP / AMP grad scaling)."""
    factory = OPTIMIZERS[cfg.optimizer]
    groups = param_groups(model, cfg.weight_decay)
    if getattr(factory, "slice_aware", False):
        return factory(groups, cfg, model=model, leaf_views=leaf_views)
    return factory(groups, cfg)


def _cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _constant(step: int, total: int, warmup: int, min_ratio: float) -> float:
    return (step + 1) / warmup if warmup and step < warmup else 1.0


SCHEDULES: dict[str, Callable[[int, int, int, float], float]] = {"cosine": _cosine, "constant": _constant}


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``cfg.warmup_steps`` then ``cfg.schedule`` (cosine down to
    ``cfg.min_lr_ratio`` x lr at ``cfg.steps``, or constant). Stepped once per training step.

    The multiplier is a closure (not saved in the scheduler's state), so a resumed run with
    more steps follows the new length."""
    fn = SCHEDULES[cfg.schedule]
    total, warmup, floor = int(cfg.steps), int(cfg.warmup_steps), float(cfg.min_lr_ratio)

    def multiplier(step: int) -> float:
        return fn(step, total, warmup, floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def step_grads(parameters: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """The gradients of a step: the ``.grad`` of ``parameters``, plus the gradients of used
    slices that a ``SliceAdamW`` training them holds (``optimizer``, or found among the live
    ones when not given)."""
    params = list(parameters)
    out = [p.grad for p in params if p.grad is not None]
    if isinstance(optimizer, SliceAdamW):
        holders = [optimizer]
    else:
        ids = {id(p) for p in params}
        holders = [o for o in list(_ATTACHED) if not ids.isdisjoint(o.tracker.ids)]
    for opt in holders:
        out.extend(opt.slice_grads())
    return out


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float | None,
                   optimizer: torch.optim.Optimizer | None = None) -> float:
    """Clip the global gradient norm to ``max_norm`` (no-op for None/0); returns the norm before.
    Pass the ``optimizer`` when it is a ``SliceAdamW`` (its slice gradients count too)."""
    grads = [g.detach() for g in step_grads(parameters, optimizer)]
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm:
        # as torch.nn.utils.clip_grad_norm_
        coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))
    return float(total)
