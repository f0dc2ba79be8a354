"""The strategy interface and its registry."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace

STRATEGIES: dict[str, type[Strategy]] = {}


class StepContext(Protocol):
    """What the trainer hands a strategy for one step (one batch ``x``, ``y``).

    ``forward(arch)`` runs the subnet ``arch`` on the batch and returns its logits;
    ``loss(logits)`` the task loss on the batch's labels; ``per_example_loss(logits)`` one
    loss per example (shape ``(B,)``, for importance-weighted losses);
    ``distill_loss(student, teacher)`` the soft-label loss; ``backward(loss)`` back-propagates
    (AMP scaling and DDP handled).
    """

    def forward(self, arch: Arch) -> torch.Tensor: ...
    def loss(self, logits: torch.Tensor) -> torch.Tensor: ...
    def per_example_loss(self, logits: torch.Tensor) -> torch.Tensor: ...
    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor: ...
    def backward(self, loss: torch.Tensor) -> None: ...


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a strategy available as ``TrainConfig(strategy=name)``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


class Strategy:
    """Base class. ``__init__`` takes the space and the strategy's keyword options;
    ``archs(rng)`` picks the step's architectures from the step's seeded ``rng`` (the same on
    every DDP rank); ``step(ctx, archs)`` runs forward/backward for them and returns the
    step's logged numbers (``loss`` at least). Gradients accumulate over the archs.

    Feedback, the same for every strategy (the trainer calls each hook every step, in this
    order): ``on_step_start(step, total)`` (0-based step of ``total``: schedules such as
    progressive shrinking); ``batch(task, batch_size, generator)`` draws the step's training
    batch (the data-sampler hook; default: ``task.batch("train", ...)``); ``archs``; ``step``;
    ``feedback(archs, logged)`` after the gradients are complete, with ``logged["grad_norm"]``
    the step's global gradient norm before clipping (with one path per step: that path's
    gradient norm). ``state_dict()`` / ``load_state_dict()`` carry what a strategy learned
    through checkpoints (plain numbers, lists, dicts with str keys and tensors only).
    """

    name: ClassVar[str] = ""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def on_step_start(self, step: int, total: int) -> None:
        """Called before ``archs`` with the 0-based step and the run's total steps."""

    def batch(self, task: Any, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's training batch ``(x, y)`` (default: uniform, ``task.batch``)."""
        return task.batch("train", batch_size, generator)

    def feedback(self, archs: list[Arch], logged: dict[str, float]) -> None:
        """Called after the step's gradients are complete (``logged["grad_norm"]`` set)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (default: nothing to restore)."""

    def archs(self, rng: np.random.Generator) -> list[Arch]:
        raise NotImplementedError

    def step(self, ctx: StepContext, archs: list[Arch]) -> dict[str, float]:
        """Default: sum of the task losses of every arch (each back-propagated at once)."""
        losses = []
        for arch in archs:
            loss = ctx.loss(ctx.forward(arch))
            ctx.backward(loss)
            losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}


def make_strategy(name: str, space: SearchSpace, options: dict[str, Any] | None = None) -> Strategy:
    """The strategy ``name`` for ``space``; unknown names or options are an ``ArchlabError``."""
    if name not in STRATEGIES:
        raise ArchlabError(f"strategy: unknown strategy {name!r}; allowed: {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    options = dict(options or {})
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "space")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ArchlabError(
            f"strategy_options.{unknown[0]}: unknown option of strategy {name!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    return cls(space, **options)
