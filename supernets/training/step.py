"""The one training step: batch, forward/backward context, clipping and the update.

``Updater`` holds what a step does around the forward and backward passes (the optimizer, the
learning-rate schedule, AMP autocast and grad scaling, gradient clipping, skipping a step
whose gradients hold NaN/inf) and the seeded batch of a step. The supernet trainer
(``trainer.train``) and the standalone trainer of ranking (``ranking.run.train_standalone``)
both run their steps through it, so the two train by the same rules. ``StepContext``
(``_Step``) is what a training strategy sees of one batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch

from ..routers import clear_routing, symmetric_kl, thor_alpha
from ..tasks.base import Task, input_adapter
from .config import ConfigError, TrainConfig
from .optim import clip_gradients, make_optimizer, make_scheduler

_LOG = logging.getLogger("archlab.train")

Sampler = Callable[[Task, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: ``cuda`` (this process's local GPU) when available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"TrainConfig.device: {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def step_seed(*parts: int) -> int:
    """A 63-bit seed mixed from ``parts`` (numpy SeedSequence), e.g. ``(seed, step, rank)``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def amp_for(cfg: TrainConfig, device: torch.device) -> tuple[Callable[[], Any], Any]:
    """``(autocast context factory, GradScaler or None)`` for ``cfg.amp`` on ``device``:
    bf16 autocast where CUDA supports it, else fp16 with a grad scaler; off on CPU."""
    use = device.type == "cuda" and (cfg.amp is None or cfg.amp)
    if not use:
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def check_finite(loss: torch.Tensor, where: str) -> None:
    """A NaN/inf loss is an error (``where``: the step or architecture it came from)."""
    if not torch.isfinite(loss):
        raise ArchlabError(f"training diverged: loss is {float(loss)} {where}; lower TrainConfig.lr")


def scaled_backward(loss: torch.Tensor, scaler: Any) -> None:
    """``loss.backward()``, through the AMP ``scaler`` when there is one."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


class Updater:
    """The parts of a training step around forward and backward, for ``model`` trained with
    ``cfg`` on ``device`` (``leaf_views``: see ``make_optimizer``; off under AMP grad scaling,
    and where the caller says so, e.g. DDP). ``rank`` seeds this process's batches;
    ``is_main`` says whether skipped steps are logged here."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, *, leaf_views: bool = True,
                 rank: int = 0, is_main: bool = True) -> None:
        self.model, self.cfg, self.device, self.rank, self.is_main = model, cfg, device, rank, is_main
        self.autocast, self.scaler = amp_for(cfg, device)
        # AMP grad scaling (and DDP, the caller's leaf_views=False) read .grad: the reference optimizer
        self.optimizer = make_optimizer(model, cfg, leaf_views=leaf_views and self.scaler is None)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.adapt = input_adapter(model)
        self.skipped = 0  # steps skipped for non-finite gradients, in all
        self.bad_run = 0  # consecutive ones up to the last step

    def batch(self, task: Task, step: int, sample: Sampler | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``step``'s training batch on the device (seeded by ``(seed, step, rank)``;
        ``sample``: a strategy's sampler, default ``task.batch("train", ...)``), adapted to
        the model's input."""
        g = torch.Generator().manual_seed(step_seed(self.cfg.seed, step, 2, self.rank))
        if sample is None:
            x, y = task.batch("train", self.cfg.batch_size, g)
        else:
            x, y = sample(task, self.cfg.batch_size, g)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return (self.adapt(x) if self.adapt is not None else x), y

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, where: str) -> None:
        """Backward of ``loss`` (scaled under AMP); a non-finite loss is an error naming ``where``."""
        check_finite(loss, where)
        scaled_backward(loss, self.scaler)

    def clip(self) -> float:
        """Unscale (AMP), clip to ``cfg.grad_clip``; the gradient norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        return clip_gradients(self.model.parameters(), self.cfg.grad_clip, self.optimizer)

    def apply(self, step: int, grad_norm: float) -> None:
        """The optimizer and schedule step. Non-finite gradients: no update (a GradScaler
        skips such steps itself), counted; more than ``cfg.max_nonfinite_steps`` in a row is
        an error."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif math.isfinite(grad_norm):
            self.optimizer.step()
            self.bad_run = 0
        else:
            self._skip(step, grad_norm)
        self.scheduler.step()

    def _skip(self, step: int, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.bad_run += 1
        if self.is_main:
            _LOG.warning("archlab: step %d: gradient norm is %s; step skipped (%d in a row, %d in all)",
                         step + 1, grad_norm, self.bad_run, self.skipped)
        if self.bad_run > self.cfg.max_nonfinite_steps:
            raise ArchlabError(
                f"training diverged: {self.bad_run} consecutive steps with NaN/inf gradients (up to step "
                f"{step + 1}; TrainConfig.max_nonfinite_steps={self.cfg.max_nonfinite_steps}); the last "
                "checkpoint is kept; lower TrainConfig.lr or check the data")


class _Step:
    """The ``StepContext`` strategies see for one batch.

    With ``aux_coef`` > 0 (nets with MoE layers only) each ``forward`` keeps the net's
    load-balancing loss and the next ``backward`` adds ``aux_coef`` times it to the loss it is
    given; ``aux_losses`` collects the values for the log.
    """

    def __init__(self, net: Any, model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor,
                 autocast: Callable[[], Any], scaler: Any, aux_coef: float = 0.0) -> None:
        self.net, self.model, self.task, self.x, self.y = net, model, task, x, y
        self.autocast, self.scaler = autocast, scaler
        self.aux_coef = aux_coef
        self._aux: torch.Tensor | None = None
        self._thor: tuple[float, torch.Tensor, torch.Tensor] | None = None
        self.aux_losses: list[float] = []

    def forward(self, arch: Arch) -> torch.Tensor:
        self.net.set_arch(arch)
        if self.aux_coef:
            clear_routing(self.net)
        with self.autocast():
            out = self.model(self.x)
        if self.aux_coef:
            self._aux = self.net.aux_loss()
            self.aux_losses.append(float(self._aux.detach()))
            self._thor = None
            alpha = thor_alpha(self.net)
            if alpha:  # THOR (routers.stochastic): a second pass with other random experts
                with self.autocast():
                    self._thor = (alpha, out, self.model(self.x))
        return out

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return self.task.loss(logits, self.y)

    def per_example_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return self.task.per_example_loss(logits, self.y)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return self.task.distill_loss(student, teacher, temperature)

    def backward(self, loss: torch.Tensor) -> None:
        check_finite(loss, f"at arch {self.net.arch.key}")
        if self._aux is not None:
            loss = loss + self.aux_coef * self._aux
            self._aux = None
        if self._thor is not None:  # 1/2 (loss + loss of the second pass) + alpha * symmetric KL
            alpha, first, second = self._thor
            loss = 0.5 * (loss + self.task.loss(second, self.y)) + alpha * symmetric_kl(first, second)
            self._thor = None
        scaled_backward(loss, self.scaler)
