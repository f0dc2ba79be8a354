"""``FastSliceAdamW``: ``SliceAdamW`` (the reference, ``.slice_adamw``) made fast, same numbers.

Two layers on the reference, each only about speed:

- Leaf views. A bank's slice is a leaf tensor viewing ``W``'s storage (made once per bank and
  slice, reused by later forwards with that slice), so its gradient lands in the view's
  ``.grad`` (only the slice's size) and ``W.grad`` stays ``None``: no full-size zero-filled
  gradient per step. ``step`` (or ``grads()``) gathers these gradients per parameter into
  their box (several slices of one tensor: summed into the bounding box, as the reference
  does). A parameter a subnet uses whole is served as itself and gets an ordinary ``.grad``.
  Read gradients through ``optimizer.grads()`` (``clip_gradients(..., optimizer)`` does), not
  ``p.grad``; ``materialize_grads()`` writes them into ordinary ``.grad``. DDP and AMP grad
  scaling need ordinary ``.grad``: the trainer uses the reference there.
- Dense workspaces for the fused kernel. A strided box is updated on dense copies kept in a
  per-parameter buffer (``workspace_bytes()``); the parameter is copied in and back each step,
  its moments stay in the buffer while the parameter keeps the same box and go back into the
  state when the box changes or when anything reads ``optimizer.state`` (or ``state_dict()``,
  or calls ``sync_state()``), so the state always reads current.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .boxes import Box, box_of, box_slices, copy_all, union
from .slice_adamw import Item, SliceAdamW, SliceRecorder


class _Slot:
    """One partly used tensor of a bank for the active slice: the leaf ``view`` the forward
    gets and its ``box`` in ``p``; ``stamp``: the tracker generation it was last listed in."""

    __slots__ = ("box", "p", "stamp", "view")

    def __init__(self, p: torch.Tensor, box: Box, view: torch.Tensor) -> None:
        self.p, self.box, self.view, self.stamp = p, box, view, -1


class _Views:
    """What a bank serves for one index while a tracker is attached."""

    __slots__ = ("b", "dynamic", "index", "slots", "w")

    b: torch.Tensor | None
    dynamic: bool
    index: tuple[slice, ...]
    slots: list[_Slot]
    w: torch.Tensor | None


class _BankCache:
    """A bank's served views, per index value (an architecture's index recurs: few distinct
    slices per bank), valid while the tracker, the parameters' storage and ``requires_grad``
    stay the same (``key``)."""

    __slots__ = ("by_value", "key", "last", "token")

    def __init__(self, token: object, key: Any) -> None:
        self.last: _Views | None
        self.by_value: dict[tuple[tuple[Any, Any, Any], ...], _Views]
        self.token, self.key, self.last, self.by_value = token, key, None, {}


class LeafViewTracker(SliceRecorder):
    """Serves the banks' slices as cached leaf views and keeps the ones the forwards used
    until the optimizer gathers their gradients."""

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        super().__init__(params)
        self.token = object()
        self.generation = 0
        self.pending: list[_Slot] = []  # leaf views used since the last gather

    def take(self, bank: Any, index: tuple[slice, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = bank.slice_params()
        lead = bank.slice_lead
        if lead:
            index = (slice(None),) * lead + index
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
                    c.slots.append(_Slot(p, box_of(idx, p.shape), view))
                    out.append(view)
        c.w, c.b = out
        return c

    def clear(self) -> None:
        """Forget what was used (and the gradients of the leaf views)."""
        for s in self.pending:
            s.view.grad = None
        self.pending = []
        self.generation += 1
        super().clear()


class FastSliceAdamW(SliceAdamW):
    """``SliceAdamW`` with leaf views and dense fused workspaces (see the module docstring):
    same arguments, same updates, same state dict."""

    tracker: LeafViewTracker

    def __init__(self, params: Any, model: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        # per parameter: (param, box, gradient of the box) gathered from the tracker
        self._boxes: dict[int, tuple[torch.Tensor, Box, torch.Tensor]] = {}  # a slice's box: never None
        self._buffers: dict[int, torch.Tensor] = {}  # per parameter: room for dense copies of a box
        self._plans: dict[tuple[int, Box | None], tuple[Any, ...]] = {}  # see _plan
        # per parameter whose box moments live in its dense buffer: (box, state views, dense views)
        self._resident: dict[int, tuple[Box | None, list[torch.Tensor], list[torch.Tensor]]] = {}
        super().__init__(params, model, *args, **kwargs)

    def _make_tracker(self, params: list[torch.Tensor]) -> LeafViewTracker:
        return LeafViewTracker(params)

    @property
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
                copy_all(dst, src)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # through __setstate__: plans and held moments dropped
        self._plans = {}  # they hold the replaced state tensors

    def workspace_bytes(self) -> int:
        """Bytes held for dense copies of strided boxes (fused kernel only), beyond the state."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    # gradients -------------------------------------------------------------------------
    def _gather(self) -> None:
        """Move the gradients of the leaf views used since the last call into ``_boxes``."""
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
                boxes[key] = (p, s.box, g)
                continue
            # a second slice of the same tensor (e.g. sandwich training): sum into the bounding box
            _, held_box, held = boxes[key]
            box = union([held_box, s.box])
            if box == held_box:
                held[box_slices(s.box, box)] += g
                boxes[key] = (p, box, held)
            else:
                total = g.new_zeros([b - a for a, b in box])
                total[box_slices(held_box, box)] += held
                total[box_slices(s.box, box)] += g
                boxes[key] = (p, box, total)

    def _resolve(self) -> None:
        """Gather, then fold the box gradients of tensors that also have an ordinary ``.grad``
        (used whole by another forward of the step) into that ``.grad``."""
        self._gather()
        for key, (p, box, g) in list(self._boxes.items()):
            if p.grad is not None:
                p.grad[box_slices(box)] += g
                del self._boxes[key]

    def slice_grads(self) -> list[torch.Tensor]:
        """The gradients of the used slices (those ``.grad`` does not show)."""
        self._resolve()
        return [e[2] for e in self._boxes.values()]

    def materialize_grads(self) -> None:
        """Write the gradients held for the used slices into ordinary full-size ``.grad``
        (zeros elsewhere), e.g. to inspect them; ``step`` then updates whole tensors."""
        self._resolve()
        boxes, self._boxes = self._boxes, {}
        for p, box, g in boxes.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad[box_slices(box)] += g

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        self._boxes = {}

    # update ------------------------------------------------------------------------------
    def _take_held(self) -> dict[int, Any]:
        self._resolve()
        boxes, self._boxes = self._boxes, {}
        self.tracker.recorded = {}
        return boxes

    def _item(self, p: torch.Tensor, held: dict[int, Any]) -> Item | None:
        if p.grad is not None:
            return super()._item(p, {})  # used whole somewhere: an ordinary update
        return held.get(id(p))

    def _update(self, group: dict[str, Any], items: list[Item]) -> None:
        """The reference's update, with the fused kernel's strided boxes on cached dense
        copies (see ``_plan``): a parameter is copied in and back every step, its moments stay
        in the dense buffer while it keeps using the same box (written back when the box
        changes, and whenever the state is read), so a subnet trained for several steps
        copies a third of what it would otherwise."""
        fused = bool(group.get("fused"))
        amsgrad = bool(group["amsgrad"])
        columns: list[list[torch.Tensor]] = [[] for _ in range(5)]
        grads: list[torch.Tensor] = []
        back_dst: list[torch.Tensor] = []  # moments of a box no longer used: back into the state
        back_src: list[torch.Tensor] = []
        in_dst: list[torch.Tensor] = []  # into the dense buffers before the kernel
        in_src: list[torch.Tensor] = []
        out_dst: list[torch.Tensor] = []  # parameters back into the supernet after it
        out_src: list[torch.Tensor] = []
        has_complex = False
        plans = self._plans
        resident = self._resident
        for p, box, g in items:
            key = id(p)
            plan = plans.get((key, box))
            if plan is None or plan[0] != p.data_ptr():
                plan = plans[(key, box)] = self._plan(p, box, group)
            _, tensors, strided_p, dense_p = plan
            for column, t in zip(columns, tensors[:3]):
                column.append(t)
            if amsgrad:
                columns[3].append(tensors[3])
            columns[4].append(tensors[-1])
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
            copy_all(back_dst, back_src)
        if in_dst:
            copy_all(in_dst, in_src)
        self._kernel(group, columns, grads, has_complex)
        if out_dst:
            copy_all(out_dst, out_src)

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
            sl = box_slices(box)
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
