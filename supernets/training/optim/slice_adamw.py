"""``SliceAdamW``, the reference: AdamW that updates only the used slices of a supernet's
shared weights.

Why: a subnet's forward reads ``W[:o, :i]`` of a shared tensor ``W``. Plain AdamW then updates
all of ``W``: entries the step's subnet never used still move, by their momentum and by weight
decay. ``SliceAdamW`` updates only the entries the step used, with the same AdamW arithmetic
(torch's functional AdamW, ``fused``/``foreach`` as chosen): it is torch AdamW on the active
slice, and leaves the rest of the tensor and of its moments untouched (the "lazy" Adam of
``torch.optim.SparseAdam``: moments of an entry decay only when it is used; the bias
correction follows the parameter's step count, which counts the steps it was used in, as for
a parameter plain AdamW skips because its ``.grad`` is ``None``).

How (recorded slices): the optimizer attaches a ``SliceRecorder`` to every weight bank of the
model whose ``slice_params`` it trains (entangled and mixture banks). Under grad mode a bank's
forward asks the recorder for its slice: an ordinary autograd slice (so ``W.grad`` is the
ordinary full-size gradient) whose box the recorder notes. ``step`` updates that box of ``W``
from ``W.grad``. Several slices of one tensor in one step (sandwich training: several
subnets, one update) update their bounding box; its entries no subnet used get a zero
gradient there (torch AdamW's update for them). The fused kernel needs dense tensors: a box
that is not (``W[:o, :i]`` with ``i`` below the full width) is copied into dense tensors,
updated and copied back.

This is the simple, exact definition of what the trainer does. ``FastSliceAdamW``
(``.fast``) is the same optimizer made faster (leaf views: slice-sized gradients; dense
workspaces kept between steps) and must give the same numbers; the tests compare the two.
The state dict has torch AdamW's format (checkpoints move between the three).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.adamw import adamw as adamw_kernel

from ...layers.banks import WeightBank
from .boxes import Box, box_of, box_slices, copy_all, is_full, scalar_dtype, union

# one parameter's update: (param, its used box or None for whole, the gradient of that box)
Item = tuple[torch.Tensor, Box | None, torch.Tensor]


class SliceRecorder:
    """Serves a bank's slices as ordinary autograd slices and records the box each forward
    used, per trained parameter, until the optimizer's next ``step`` or ``zero_grad``."""

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        self.ids = {id(p) for p in params}
        self.recorded: dict[int, tuple[torch.Tensor, Box]] = {}  # union of the used boxes

    def take(self, bank: Any, index: tuple[slice, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight[lead + index], bias[lead + index[0]])`` of ``bank`` (its ``slice_params``;
        ``lead``: its ``slice_lead`` leading dimensions, taken whole) for a forward under grad mode."""
        w, b = bank.slice_params()
        lead = bank.slice_lead
        if lead:
            index = (slice(None),) * lead + index
        return self.record(w, index), (self.record(b, index[:lead + 1]) if b is not None else None)

    def record(self, p: torch.Tensor, index: tuple[slice, ...]) -> torch.Tensor:
        """``p[index]``, noting its box when ``p`` is trained here."""
        if p.requires_grad and id(p) in self.ids:
            box = box_of(index, p.shape)
            seen = self.recorded.get(id(p))
            self.recorded[id(p)] = (p, box if seen is None or seen[1] == box else union([seen[1], box]))
        return p[index]

    def clear(self) -> None:
        """Forget what was used."""
        self.recorded = {}


class SliceAdamW(torch.optim.AdamW):
    """AdamW that updates only the used slices of a supernet's entangled weights.

    ``SliceAdamW(params, model, lr=..., ...)``: ``params`` (or parameter groups) and the AdamW
    options as for ``torch.optim.AdamW``; ``model`` the supernet (any module: every weight bank
    in it with ``slice_params`` in ``params`` is attached). Parameters outside the banks, and
    those a step uses whole, are updated exactly as by ``torch.optim.AdamW`` (same functional
    AdamW, same state). See the module docstring.
    """

    def __init__(self, params: Any, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        if any(g.get("differentiable") for g in self.param_groups):
            raise ValueError("SliceAdamW: differentiable=True is not supported")
        tracked = [p for g in self.param_groups for p in g["params"] if not torch.is_complex(p)]
        self.tracker = self._make_tracker(tracked)
        self._banks: list[weakref.ref[Any]] = []
        ref = weakref.ref(self.tracker)
        for m in model.modules():
            sliced = m.slice_params() if isinstance(m, WeightBank) else None
            if isinstance(m, WeightBank) and sliced is not None and id(sliced[0]) in self.tracker.ids:
                m._slice_tracker = ref
                m._slice_views = None
                self._banks.append(weakref.ref(m))

    def _make_tracker(self, params: list[torch.Tensor]) -> SliceRecorder:
        return SliceRecorder(params)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "tracker"):  # after __init__ (which adds the first groups itself)
            for p in self.param_groups[-1]["params"]:
                if not torch.is_complex(p):
                    self.tracker.ids.add(id(p))

    def release(self) -> None:
        """Detach from the banks: they serve untracked slices again (gradients still held for
        the next step are written into ``.grad`` first)."""
        self.materialize_grads()
        for ref in self._banks:
            bank = ref()
            if bank is not None and bank._slice_tracker is not None and bank._slice_tracker() is self.tracker:
                bank._slice_tracker = None
                bank._slice_views = None
        self._banks = []
        self.tracker.ids = set()

    # gradients -------------------------------------------------------------------------
    def slice_grads(self) -> list[torch.Tensor]:
        """Gradients of used slices that ``.grad`` does not show (none here: every gradient
        is an ordinary ``.grad``)."""
        return []

    def grads(self) -> list[torch.Tensor]:
        """Every gradient of this step: the ``.grad`` of the parameters that have one, and
        ``slice_grads()``. Their norm is that of the full-size gradients; scaling them in
        place scales what ``step`` applies."""
        out = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return out + self.slice_grads()

    def materialize_grads(self) -> None:
        """Make every gradient an ordinary full-size ``.grad`` (already so here)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        self.tracker.clear()

    # update ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = self._take_held()
        for group in self.param_groups:
            items = [item for p in group["params"] if (item := self._item(p, held)) is not None]
            if items:
                self._update(group, items)
        return loss

    def _take_held(self) -> dict[int, Any]:
        """What the forwards since the last step used, per parameter id (and forget it)."""
        recorded, self.tracker.recorded = self.tracker.recorded, {}
        return recorded

    def _item(self, p: torch.Tensor, held: dict[int, Any]) -> Item | None:
        """The update of ``p`` this step: its used box of ``p.grad`` (whole when used whole)."""
        grad = p.grad
        if grad is None:
            return None
        if grad.is_sparse:
            raise RuntimeError("SliceAdamW does not support sparse gradients")
        seen = held.get(id(p))
        if seen is not None and not is_full(seen[1], p.shape):
            return p, seen[1], grad[box_slices(seen[1])]
        return p, None, grad

    def _tensors(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[param, exp_avg, exp_avg_sq, (max_exp_avg_sq)]`` of ``p`` and its step counter."""
        state = self.state[p]
        if len(state) == 0:
            self._init_state(p, state, group)
        tensors = [p, state["exp_avg"], state["exp_avg_sq"]] + ([state["max_exp_avg_sq"]] if group["amsgrad"] else [])
        return tensors, state["step"]

    def _update(self, group: dict[str, Any], items: list[Item]) -> None:
        """One functional AdamW call over the boxes of ``items``; under the fused kernel a
        strided box is copied into dense tensors and back."""
        fused = bool(group.get("fused"))
        columns: list[list[torch.Tensor]] = [[] for _ in range(5)]  # params, exp_avgs, exp_avg_sqs, max_sqs, steps
        grads: list[torch.Tensor] = []
        strided: list[torch.Tensor] = []
        dense: list[torch.Tensor] = []
        has_complex = False
        for p, box, g in items:
            tensors, step = self._tensors(p, group)
            if box is not None:
                tensors = [t.detach()[box_slices(box)] for t in tensors]
                if fused and not all(t.is_contiguous() for t in tensors):
                    strided += tensors
                    tensors = [t.contiguous() for t in tensors]
                    dense += tensors
            else:
                has_complex = has_complex or torch.is_complex(p)
            for column, t in zip(columns, tensors[:3]):
                column.append(t)
            if group["amsgrad"]:
                columns[3].append(tensors[3])
            columns[4].append(step)
            grads.append(g.contiguous() if fused and not g.is_contiguous() else g)
        self._kernel(group, columns, grads, has_complex)
        if strided:
            copy_all(strided, dense)

    def _kernel(self, group: dict[str, Any], columns: list[list[torch.Tensor]], grads: list[torch.Tensor],
                has_complex: bool) -> None:
        """torch's functional AdamW over ``columns`` (params, exp_avgs, exp_avg_sqs, max_sqs,
        steps) with ``group``'s options."""
        params, exp_avgs, exp_avg_sqs, max_sqs, steps = columns
        beta1, beta2 = group["betas"]
        adamw_kernel(
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps,
            foreach=group.get("foreach"), capturable=bool(group.get("capturable")), differentiable=False,
            fused=group.get("fused"), grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None), has_complex=has_complex, amsgrad=bool(group["amsgrad"]),
            beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=group["maximize"],
        )

    @staticmethod
    def _init_state(p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        # the state torch AdamW would create (same keys, dtypes and devices)
        if group.get("fused") or group.get("capturable"):
            state["step"] = torch.zeros((), dtype=torch.float32 if group.get("fused") else scalar_dtype(),
                                        device=p.device)
        else:
            state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
