"""``Task``: the data and the metric a supernet is trained and scored on.

A task serves random training batches (``batch``), fixed evaluation batches
(``eval_batches``), the training loss (``loss``), the distillation loss used by in-place
distillation (``distill_loss``) and the metrics (``evaluate``). Concrete tasks live in
``tasks_text`` (character-level LM) and ``tasks_vision`` (digits, MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

Batch = tuple[torch.Tensor, torch.Tensor]
SPLITS = ("train", "val")


class TaskError(ArchlabError):
    """A task's data is missing, malformed or unusable (the message names the path)."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise TaskError(f"split: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class Task:
    """Base class: subclasses set ``kind`` and implement ``batch``, ``eval_batches``,
    ``model_kwargs`` and ``_accumulate`` / ``_finish`` (the metric).

    ``metric`` is the name of the main metric (``val_loss`` or ``val_accuracy``) and
    ``metric_direction`` says whether lower (``"min"``) or higher (``"max"``) is better.
    """

    kind: ClassVar[str] = ""
    metric: str = "val_loss"
    metric_direction: str = "min"
    eval_batch_size: int = 256

    # data -------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments a model family needs for this data (vocab size, classes, ...)."""
        raise NotImplementedError

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A random batch ``(x, y)`` from ``split`` ("train" | "val"), drawn with ``generator``."""
        raise NotImplementedError

    def eval_batches(self, split: str = "val", max_batches: int | None = None,
                     batch_size: int | None = None) -> list[Batch]:
        """The fixed, ordered evaluation batches of ``split`` (same every call), on the CPU."""
        raise NotImplementedError

    def num_examples(self, split: str) -> int:
        """Number of examples (images, or evaluation windows for text) in ``split``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able description of the task (kind and its arguments)."""
        return {"kind": self.kind}

    def preprocessing(self) -> dict[str, Any] | None:
        """JSON description of what the task does to raw inputs before a model sees them
        (recorded by export, applied by ``load_subnet``; kinds in
        ``archlab.supernets.tasks.preprocess.PREPROCESSORS``), or ``None`` for none."""
        return None

    # losses -----------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every prediction (tokens or images)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))

    def per_example_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per example, shape ``(B,)`` (mean over an example's tokens)."""
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="none")
        return ce.reshape(y.shape[0], -1).mean(1)

    def examples(self, split: str, index: torch.Tensor) -> Batch:
        """The examples ``index`` (a 1-D long tensor) of ``split``: what a data sampler that
        picks its own examples (PA&DA) needs; tasks without addressable examples raise."""
        raise TaskError(f"task {self.kind!r} does not serve examples by index (needed by data importance sampling)")

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """KL(teacher || student) of the softened distributions, times ``temperature**2``."""
        t = float(temperature)
        s = F.log_softmax(student.reshape(-1, student.shape[-1]).float() / t, dim=-1)
        p = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]).float().detach() / t, dim=-1)
        return F.kl_div(s, p, log_target=True, reduction="batchmean") * (t * t)

    # metrics ----------------------------------------------------------------------
    @torch.no_grad()
    def score(self, model: nn.Module, batches: Iterable[Batch], adapt: Any = None) -> dict[str, float]:
        """Metrics of ``model`` (in eval mode) over ``batches``; ``adapt(x)`` reshapes inputs."""
        device = model_device(model)
        was_training = model.training
        model.eval()
        try:
            total_loss, correct, count = 0.0, 0, 0
            for x, y in batches:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if adapt is not None:
                    x = adapt(x)
                logits = model(x).float()
                flat = logits.reshape(-1, logits.shape[-1])
                yy = y.reshape(-1)
                total_loss += float(F.cross_entropy(flat, yy, reduction="sum"))
                correct += int((flat.argmax(-1) == yy).sum())
                count += yy.numel()
        finally:
            model.train(was_training)
        if count == 0:
            raise TaskError("no evaluation data (max_batches must be at least 1)")
        return self._finish(total_loss / count, correct / count)

    def _finish(self, mean_loss: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_loss, "accuracy": accuracy}

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int | None = None) -> dict[str, float]:
        """Metrics of ``model`` on ``split``: ``loss`` (mean cross-entropy, nats) and
        ``accuracy`` (classification) or ``perplexity`` (language modelling)."""
        return self.score(model, self.eval_batches(split, max_batches), adapt=input_adapter(model))

    def metric_value(self, metrics: dict[str, float]) -> float:
        """The main metric (``self.metric``) from an ``evaluate`` result (prefixed or not)."""
        if self.metric in metrics:
            return float(metrics[self.metric])
        _, _, bare = self.metric.partition("_")
        return float(metrics[bare])


def input_adapter(model: nn.Module) -> Any:
    """A function reshaping task inputs to what ``model`` expects, or ``None``.

    Image tasks produce ``(B, C, H, W)``; a model whose ``example_input`` is ``(B, F)`` (an
    MLP) gets them flattened.
    """
    example = getattr(model, "example_input", None)
    if example is None:
        flat = getattr(model, "family", None) == "mlp"
        return (lambda x: x.flatten(1) if x.dim() > 2 else x) if flat else None
    try:
        rank = example(1).dim()
    except Exception:
        return None
    if rank == 2:
        return lambda x: x.flatten(1) if x.dim() > 2 and x.is_floating_point() else x
    return None


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified split: ``(train_idx, val_idx)``, ``val_fraction`` of each class."""
    if not 0.0 < val_fraction < 1.0:
        raise TaskError(f"val_fraction: must be between 0 and 1 (exclusive), got {val_fraction}")
    y = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(int(seed))
    train_parts, val_parts = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = max(1, math.floor(len(idx) * val_fraction + 0.5)) if len(idx) > 1 else 0
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    return torch.sort(torch.cat(train_parts)).values, torch.sort(torch.cat(val_parts)).values
