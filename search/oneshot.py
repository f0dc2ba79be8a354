"""One-shot differentiable search on the supernet's weight bank (DARTS, GDAS, DrNAS, TangleNAS).

``oneshot_search(net, task, config)`` learns architecture parameters (one vector per choice
slot, ``archlab.supernets.soft.methods``) and the supernet's weights together, alternating
(bilevel, as DARTS): an architecture step on a batch of the architecture split (the task's
``val`` split by default) and a weight step on a ``train`` batch, the network mixing every
choice on the entangled weights (``archlab.supernets.soft.ops``). ``darts2`` replaces the
architecture gradient by the second-order (unrolled) one. An optional differentiable
latency cost (``archlab.search.oneshot_cost``) joins the architecture loss.

Weights train as in DARTS: SGD, momentum 0.9, lr 0.025 cosine-annealed to 0.001, weight
decay 3e-4, gradient norm clipped at 5. The result holds the final discrete architecture
(each slot's most likely value, by the method's derivation rule) and the probability history; ``save`` writes it atomically
as JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.core.io import atomic_write_json
from archlab.spaces import Arch
from archlab.spaces.soft import SoftArch, SoftLayout
from archlab.supernets.base import pick_device
from archlab.supernets.soft.methods import ArchParameters, Method, get_method
from archlab.supernets.soft.ops import clear_soft, set_soft
from archlab.supernets.tasks.base import input_adapter

from .errors import SearchError
from .oneshot_cost import ChoiceCosts, penalty

RESULT_FORMAT = 1


@dataclass
class OneShotConfig:
    """Settings of a one-shot search (``steps`` alternations of an arch and a weight step)."""

    method: str = "darts"
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    warmup_steps: int = 0  # weight-only steps before the architecture starts to move
    arch_split: str = "val"
    arch_options: dict[str, Any] = field(default_factory=dict)
    latency_weight: float = 0.0
    latency_target_ms: float | None = None
    history_every: int = 10
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OneShotConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SearchError(f"oneshot: unknown setting {unknown[0]!r}; allowed: {', '.join(sorted(names))}")
        cfg = cls(**dict(values))
        cfg.check()
        return cfg

    def check(self) -> None:
        get_method(self.method, **self.arch_options)
        for name in ("steps", "batch_size", "history_every"):
            if int(getattr(self, name)) < 1:
                raise SearchError(f"oneshot.{name}: {getattr(self, name)!r}; allowed: an integer >= 1")
        if self.arch_split not in ("train", "val"):
            raise SearchError(f"oneshot.arch_split: {self.arch_split!r}; allowed: train, val")
        if self.latency_weight < 0:
            raise SearchError(f"oneshot.latency_weight: {self.latency_weight!r}; allowed: a number >= 0")


@dataclass
class OneShotResult:
    """The final architecture, the probability history and the run's figures."""

    method: str
    arch: Arch
    probs: dict[str, list[float]]
    history: list[dict[str, Any]]
    wall_s: float
    config: dict[str, Any]
    latency_fit_r2: float | None = None

    def path_archs(self) -> list[tuple[int, Arch]]:
        """The distinct argmax architectures along the path, with the first step each appeared."""
        seen: dict[str, tuple[int, Arch]] = {}
        for h in self.history:
            a = Arch.from_json(h["arch"])
            seen.setdefault(a.key, (int(h["step"]), a))
        return list(seen.values())

    def to_json(self) -> dict[str, Any]:
        return {"archlab_oneshot": RESULT_FORMAT, "method": self.method, "arch": self.arch.to_dict(),
                "probs": self.probs, "history": self.history, "wall_s": self.wall_s, "config": self.config,
                "latency_fit_r2": self.latency_fit_r2}

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_json())
        return path


class _Bilevel:
    """The alternating loop's state: net, arch parameters, both optimisers, the data."""

    def __init__(self, net: Any, task: Any, cfg: OneShotConfig, costs: ChoiceCosts | None) -> None:
        self.dev = pick_device(cfg.device)
        self.net, self.task, self.cfg, self.costs = net.to(self.dev).train(), task, cfg, costs
        torch.manual_seed(cfg.seed)  # DrNAS's Dirichlet draws come from the global generator
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.layout = SoftLayout(net.space)
        self.arch = ArchParameters(self.layout, cfg.seed).to(self.dev)
        # architecture parameters a family adds beyond the space's choices (PC-DARTS edge betas)
        extra = list(getattr(net, "soft_extra_parameters", list)())
        self.arch.extra = torch.nn.ParameterList(extra)
        self.method: Method = get_method(cfg.method, **cfg.arch_options)
        self.a_opt = self.method.optimizer(self.arch)
        skip = {id(p) for p in extra}
        self.weights = [p for p in net.parameters() if p.requires_grad and id(p) not in skip]
        self.w_opt = torch.optim.SGD(self.weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=cfg.steps, eta_min=cfg.lr_min)
        self.adapt = input_adapter(net)
        self.scale_ms = costs.of_arch(self.layout.uniform().argmax()) if costs is not None else 1.0

    def batch(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.task.batch(split, self.cfg.batch_size, generator=self.gen)
        x, y = x.to(self.dev), y.to(self.dev)
        return (self.adapt(x) if self.adapt is not None else x), y

    def loss(self, probs: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        set_soft(self.net, self.arch.as_dict(probs))
        return self.task.loss(self.net(x), y)

    def arch_loss(self, probs: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = self.loss(probs, x, y)
        task_loss = float(loss.detach())
        reg = self.method.regulariser(list(self.arch.alphas))
        if reg is not None:
            loss = loss + reg
        if self.costs is not None and self.cfg.latency_weight > 0:
            expected = self.costs.expected(self.arch.as_dict(self.method.expected(list(self.arch.alphas))))
            loss = loss + penalty(expected, self.cfg.latency_weight, self.cfg.latency_target_ms, self.scale_ms)
        return loss, task_loss

    def arch_step(self, progress: float) -> float:
        x, y = self.batch(self.cfg.arch_split)
        self.a_opt.zero_grad(set_to_none=True)
        probs = self.method.mixing(list(self.arch.alphas), progress, self.gen)
        if self.method.second_order:
            return self._unrolled(progress, probs, x, y)
        loss, task_loss = self.arch_loss(probs, x, y)
        loss.backward(inputs=list(self.arch.parameters()))
        self.a_opt.step()
        return task_loss

    def _unrolled(self, progress: float, probs: list[torch.Tensor], xv: torch.Tensor, yv: torch.Tensor) -> float:
        """DARTS second order: grad_a L_val(w', a) - xi * (grad_a L_tr(w+) - grad_a L_tr(w-)) / 2eps,
        ``w' = w - xi * (momentum buffer + grad_w L_tr + wd * w)``, ``eps = 0.01 / |grad_w' L_val|``."""
        xt, yt = self.batch("train")
        xi, alphas = self.w_opt.param_groups[0]["lr"], list(self.arch.alphas)
        backup = [w.detach().clone() for w in self.weights]
        g_train = torch.autograd.grad(self.loss([p.detach() for p in probs], xt, yt), self.weights, allow_unused=True)
        with torch.no_grad():
            for w, g in zip(self.weights, g_train):
                buf = self.w_opt.state.get(w, {}).get("momentum_buffer")
                step = (g if g is not None else torch.zeros_like(w)) + self.cfg.weight_decay * w
                if buf is not None:
                    step = step + self.cfg.momentum * buf
                w.sub_(xi * step)
        loss, task_loss = self.arch_loss(probs, xv, yv)
        grads = torch.autograd.grad(loss, alphas + self.weights, allow_unused=True)
        d_alpha = [g if g is not None else torch.zeros_like(a) for g, a in zip(grads[: len(alphas)], alphas)]
        d_w = [g if g is not None else torch.zeros_like(w) for g, w in zip(grads[len(alphas):], self.weights)]
        eps = 0.01 / (torch.sqrt(torch.as_tensor(sum((g * g).sum() for g in d_w))) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, g in zip(self.weights, backup, d_w):
                    w.copy_(b + sign * eps * g)
            soft = self.method.mixing(alphas, progress, self.gen)  # a fresh graph to the alphas
            hessian.append(torch.autograd.grad(self.loss(soft, xt, yt), alphas, allow_unused=True))
        with torch.no_grad():
            for w, b in zip(self.weights, backup):
                w.copy_(b)
        for a, da, gp, gn in zip(alphas, d_alpha, *hessian):
            hp = (gp - gn) / (2 * eps) if gp is not None and gn is not None else torch.zeros_like(a)
            a.grad = da - xi * hp
        self.a_opt.step()
        return task_loss

    def weight_step(self, progress: float) -> float:
        x, y = self.batch("train")
        with torch.no_grad():
            probs = [p.detach() for p in self.method.mixing(list(self.arch.alphas), progress, self.gen)]
        loss = self.loss(probs, x, y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.weights)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip)
        self.w_opt.step()
        self.sched.step()
        return float(loss.detach())

    def distribution(self) -> SoftArch:
        with torch.no_grad():
            vecs = [p.detach().double().cpu().numpy() for p in self.method.expected(list(self.arch.alphas))]
        return SoftArch(self.layout, [v / v.sum() for v in vecs])

    def derive(self, dist: SoftArch) -> Arch:
        """The discrete architecture by the method's derivation rule (``Method.derive``)."""
        picks = self.method.derive([s.values for s in self.layout.slots], dist.vectors)
        one_hot = [np.eye(s.size)[i] for s, i in zip(self.layout.slots, picks)]
        return SoftArch(self.layout, one_hot).argmax()


def oneshot_search(net: Any, task: Any, config: OneShotConfig | Mapping[str, Any] | None = None,
                   costs: ChoiceCosts | None = None, out: str | Path | None = None,
                   on_record: Callable[[dict[str, Any]], None] | None = None) -> OneShotResult:
    """Search ``net``'s space by ``config.method`` while training ``net`` on ``task``.

    ``costs``: per-choice latency costs (``ChoiceCosts``) for the latency term (used when
    ``config.latency_weight`` > 0). ``out``: JSON path the result is saved to (atomically).
    ``on_record(entry)`` sees each history entry as it is recorded. The net is left in its
    discrete mode, set to the final architecture.
    """
    cfg = config if isinstance(config, OneShotConfig) else OneShotConfig.from_dict(config or {})
    cfg.check()
    loop = _Bilevel(net, task, cfg, costs)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    val_loss = math.nan
    try:
        for step in range(cfg.steps):
            progress = step / max(1, cfg.steps - 1)
            if step >= cfg.warmup_steps:
                val_loss = loop.arch_step(progress)
            train_loss = loop.weight_step(progress)
            if step % cfg.history_every == 0 or step == cfg.steps - 1:
                dist = loop.distribution()
                entry = {"step": step, "train_loss": train_loss, "arch_loss": val_loss,
                         "arch": loop.derive(dist).to_json(), "probs": dist.to_dict(), "entropy": dist.entropy()}
                if costs is not None:
                    entry["expected_latency_ms"] = float(costs.expected(
                        {k: torch.as_tensor(v) for k, v in dist.to_dict().items()}))
                history.append(entry)
                if on_record is not None:
                    on_record(entry)
    finally:
        clear_soft(net)
    wall = time.perf_counter() - start
    final = loop.distribution()
    arch = loop.derive(final)
    net.set_arch(arch)
    result = OneShotResult(cfg.method, arch, final.to_dict(), history, wall, asdict(cfg),
                           costs.r2 if costs is not None else None)
    if out is not None:
        result.save(out)
    return result


__all__ = ["OneShotConfig", "OneShotResult", "oneshot_search"]
