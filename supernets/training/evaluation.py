"""Scoring subnets with inherited weights: ``evaluate`` (one arch) and ``evaluate_many``.

For nets with BatchNorm the running statistics are recalibrated for each architecture on a
few fixed training batches (the stored statistics mix many subnets), and the supernet's own
buffers are restored afterwards, so evaluation never changes the supernet. The global RNG
is left untouched too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archlab.spaces import Arch

from ..tasks.base import Batch, Task, input_adapter, model_device

if TYPE_CHECKING:
    from ..base import Supernet

CALIBRATION_SEED = 0x5EED


def batchnorm_modules(net: nn.Module) -> list[nn.Module]:
    """Every module under ``net`` with BatchNorm running statistics."""
    return [m for m in net.modules() if hasattr(m, "running_mean") and hasattr(m, "running_var")]


def calibration_batches(task: Task, n_batches: int = 4, batch_size: int = 256, seed: int = CALIBRATION_SEED) -> list[Batch]:
    """``n_batches`` fixed random training batches (same every call) for BN recalibration."""
    g = torch.Generator().manual_seed(int(seed))
    return [task.batch("train", batch_size, g) for _ in range(int(n_batches))]


@contextlib.contextmanager
def preserved_batchnorm(net: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm buffer of ``net`` on exit."""
    saved = [(m, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in batchnorm_modules(net)]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)


def recalibrate(net: nn.Module, batches: Iterable[Batch], adapt: Any = None) -> None:
    """Re-estimate the active architecture's BatchNorm statistics on ``batches`` (global RNG kept)."""
    from ..layers.conv import recalibrate_batchnorm

    inputs = [(adapt(x) if adapt is not None else x) for x, _ in batches]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        recalibrate_batchnorm(net, inputs)


class Evaluator:
    """Scores many architectures of one supernet on one task, reusing prepared batches.

    Evaluation batches (``max_batches`` of ``split``) and, for nets with BatchNorm, the
    calibration batches are built once and moved to the net's device once.
    ``recalibrate``: None = only when the net has BatchNorm.
    """

    def __init__(self, net: Supernet, task: Task, split: str = "val", max_batches: int | None = None,
                 recalibrate: bool | None = None, calib_batches: int = 4, calib_batch_size: int = 256) -> None:
        self.net, self.task, self.split = net, task, split
        device = model_device(net)
        self.adapt = input_adapter(net)
        self.batches = [(x.to(device), y.to(device)) for x, y in task.eval_batches(split, max_batches)]
        has_bn = bool(batchnorm_modules(net))
        self.recalibrate = has_bn if recalibrate is None else bool(recalibrate) and has_bn
        self.calib: list[Batch] = []
        if self.recalibrate:
            self.calib = [(x.to(device), y) for x, y in calibration_batches(task, calib_batches, calib_batch_size)]

    def __call__(self, arch: Mapping[str, Any] | str) -> dict[str, float]:
        """Metrics of ``arch`` with inherited weights: ``loss``, ``accuracy`` / ``perplexity``,
        and the same with the split prefix (``val_loss``, ...), so ``result[task.metric]`` works."""
        net = self.net
        previous = getattr(net, "_arch", None)
        with preserved_batchnorm(net) if self.recalibrate else contextlib.nullcontext():
            net.set_arch(arch)
            if self.recalibrate:
                recalibrate(net, self.calib, self.adapt)
            metrics = self.task.score(net, self.batches, adapt=self.adapt)
        if previous is not None:
            net.set_arch(previous)
        out = dict(metrics)
        out.update({f"{self.split}_{k}": v for k, v in metrics.items()})
        return out


def evaluate(net: Supernet, task: Task, arch: Mapping[str, Any] | str, split: str = "val",
             max_batches: int | None = None, recalibrate: bool | None = None) -> dict[str, float]:
    """Metrics of the subnet ``arch`` with inherited weights (BatchNorm recalibrated for
    conv nets); see ``Evaluator``."""
    return Evaluator(net, task, split, max_batches, recalibrate)(arch)


def evaluate_many(net: Supernet, task: Task, archs: Iterable[Mapping[str, Any] | str], split: str = "val",
                  max_batches: int | None = None, recalibrate: bool | None = None,
                  show_progress: bool = False) -> list[dict[str, float]]:
    """``evaluate`` for every arch, in order, sharing the prepared batches (no gradients)."""
    from archlab.core.progress import progress

    archs = list(archs)
    ev = Evaluator(net, task, split, max_batches, recalibrate)
    out = []
    bar = progress(total=len(archs), desc="evaluate", unit="arch", disable=None if show_progress else True)
    with torch.no_grad(), bar:
        for a in archs:
            out.append(ev(a if isinstance(a, (Arch, str)) else Arch(a)))
            bar.update(1)
    return out


def extract_calibrated(net: Supernet, task: Task, arch: Mapping[str, Any] | str) -> nn.Module:
    """``net.extract(arch)`` (eval mode) with the BatchNorm statistics ``evaluate`` scores it
    with: recalibrated for ``arch`` on the task's fixed calibration batches. The supernet's
    own buffers and active architecture are restored, so the extracted module scores exactly
    what the search recorded for it."""
    previous = getattr(net, "_arch", None)
    was_training = net.training
    net.eval()
    has_bn = bool(batchnorm_modules(net))
    with preserved_batchnorm(net) if has_bn else contextlib.nullcontext():
        net.set_arch(arch)
        if has_bn:
            device = model_device(net)
            recalibrate(net, [(x.to(device), y) for x, y in calibration_batches(task)], input_adapter(net))
        sub = net.extract(arch).eval()
    if previous is not None:
        net.set_arch(previous)
    net.train(was_training)
    return sub
