"""``TrainConfig``: every setting of a supernet training run, validated on creation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.core.numbers import show_int

DEVICES = ("auto", "cpu", "cuda")
MAX_BATCH_SIZE = 2**20  # examples per step and process; more is a typo, not a batch
MAX_STEPS = 10**12


class ConfigError(ArchlabError):
    """A ``TrainConfig`` field has a bad value (the message names the field)."""


def _shown(value: Any) -> str:
    """``repr(value)``, or a size for integers too long to print (Python refuses > 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return show_int(value).strip("<>")
    return repr(value)


def _fail(name: str, why: str, value: Any) -> None:
    raise ConfigError(f"TrainConfig.{name}: {why}, got {_shown(value)}")


def _int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        _fail(name, f"must be an integer >= {low}" + (f" and <= {high:,}" if high is not None else ""), value)


def _float(name: str, value: Any, low: float, high: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low
    if ok and isinstance(value, int) and abs(value) > 10**300:
        _fail(name, "must be a finite number of sensible size", value)
    if ok and high is not None:
        ok = value <= high
    if not ok:
        _fail(name, f"must be a number >= {low}" + (f" and <= {high}" if high is not None else ""), value)


@dataclass
class TrainConfig:
    """Supernet training settings.

    ``steps`` optimizer steps of ``batch_size`` examples (per process under DDP); ``lr`` peak
    learning rate after ``warmup_steps`` of linear warmup, then ``schedule`` ("cosine" down to
    ``min_lr_ratio`` x lr, or "constant"); ``optimizer`` "adamw" | "sgd" (``momentum`` for SGD);
    ``weight_decay`` on matrices and kernels; ``grad_clip`` max global gradient norm (0/None:
    off); ``strategy`` names a registered strategy and ``strategy_options`` its options;
    ``checkpoint_every`` / ``eval_every`` / ``log_every`` in steps (0: only at the end);
    ``eval_batches`` caps validation batches for evaluations during training; ``seed`` fixes
    architectures, batches and dropout; ``device`` "auto" (cuda when available) | "cpu" |
    "cuda" | "cuda:N"; ``amp`` mixed precision (None: on for CUDA, never on CPU);
    ``num_threads`` CPU threads torch uses during ``train`` only (None: leave as is; 1 is much
    faster for small models on a busy machine), restored afterwards; ``moe_aux_coef`` weight
    of the mixture-of-experts load-balancing loss added to every subnet's loss (only for nets
    with token-routed MoE layers, ``archlab.supernets.layers.moe``; 0: off); ``max_nonfinite_steps``
    consecutive steps whose gradients hold NaN/inf are skipped (not applied, counted and
    logged as ``skipped_steps``) before the run stops with an error (0: stop at the first).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    strategy: str = "sandwich"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 100
    eval_every: int = 0
    eval_batches: int | None = 4
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    num_threads: int | None = None
    moe_aux_coef: float = 0.01
    max_nonfinite_steps: int = 10

    def __post_init__(self) -> None:
        from .optim import OPTIMIZERS, SCHEDULES
        from .strategies import STRATEGIES

        _int("steps", self.steps, 1, MAX_STEPS)
        _int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        for name in ("lr", "weight_decay", "momentum", "min_lr_ratio", "moe_aux_coef", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, float) and not math.isfinite(v):
                _fail(name, "must be a finite number", v)
        _float("lr", self.lr, 0.0)
        if self.lr <= 0:
            _fail("lr", "must be > 0", self.lr)
        _float("weight_decay", self.weight_decay, 0.0)
        _float("momentum", self.momentum, 0.0, 1.0)
        _float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _int("warmup_steps", self.warmup_steps, 0)
        _int("checkpoint_every", self.checkpoint_every, 0)
        _int("eval_every", self.eval_every, 0)
        _int("log_every", self.log_every, 0)
        _int("seed", self.seed, 0, 2**63 - 1)
        _int("max_nonfinite_steps", self.max_nonfinite_steps, 0)
        if self.eval_batches is not None:
            _int("eval_batches", self.eval_batches, 1)
        if self.grad_clip is not None:
            _float("grad_clip", self.grad_clip, 0.0)
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", f"must be one of {', '.join(sorted(OPTIMIZERS))}", self.optimizer)
        if self.schedule not in SCHEDULES:
            _fail("schedule", f"must be one of {', '.join(sorted(SCHEDULES))}", self.schedule)
        if self.strategy not in STRATEGIES:
            _fail("strategy", f"must be one of {', '.join(sorted(STRATEGIES))}", self.strategy)
        if not isinstance(self.strategy_options, dict):
            _fail("strategy_options", "must be a dict of the strategy's options", self.strategy_options)
        dev = self.device
        if not isinstance(dev, str) or not (dev in DEVICES or (dev.startswith("cuda:") and dev[5:].isdigit())):
            _fail("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'", dev)
        if self.num_threads is not None:
            _int("num_threads", self.num_threads, 1)
        _float("moe_aux_coef", self.moe_aux_coef, 0.0)
        if self.amp is not None and not isinstance(self.amp, bool):
            _fail("amp", "must be True, False or None (auto)", self.amp)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed (unknown fields are an error)."""
        names = {f.name for f in dataclasses.fields(self)}
        for k in changes:
            if k not in names:
                raise ConfigError(f"TrainConfig.{k}: unknown field; allowed: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. JSON); unknown keys are an error naming the key."""
        return cls().replace(**data)
