"""``pada``: PA&DA (Lu et al., CVPR 2023): path and data importance sampling from gradient-norm
feedback, with the importance-weighted loss.

Paths. Every (parameter, value) of the space (``n_layer=3``, ``layers.1.width=64``: one slot
per layer, as PA&DA has one distribution per edge) keeps an importance: a running average
(``momentum``) of the gradient norms of the paths that used it (``feedback``: the step's
gradient norm before clipping, divided by the path weight the loss carried, so it is the
plain path's norm). A path is drawn parameter by parameter with
``p(v) = (1 - path_eps) * imp(v) / sum(imp) + path_eps / n`` (values not seen yet count as the
mean of the seen ones). Its loss is multiplied by ``u(path) / q(path)`` (uniform over q, the
product of the per-parameter ratios; clipped to ``max_weight``), so the expected gradient is
that of uniform single-path training, with less variance.

Data. Every training example keeps an importance, the norm of the loss's gradient with
respect to its logits (``||softmax - onehot||``, PA&DA's cheap per-example bound), updated
whenever the example is in a batch. Batches are drawn with
``q_i = (1 - data_eps) * imp_i / sum(imp) + data_eps / N`` (with replacement) and each
example's loss is weighted ``1 / (N q_i)`` (clipped to ``max_weight``). Needs a task with
``examples`` (image tasks); ``data=False`` keeps uniform batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.params import PerLayer
from archlab.spaces.space import _count, _order

from .base import StepContext, Strategy, register_strategy


def _check(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ArchlabError(f"strategy_options.{name}: must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def flat_values(arch: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(name, value)`` of every parameter of ``arch``; per-layer entries named ``layers.2.width``."""
    out: list[tuple[str, Any]] = []
    for k, v in arch.items():
        name = f"{prefix}{k}"
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], Mapping):
            for i, block in enumerate(v):
                out += flat_values(block, f"{name}.{i}.")
        else:
            out.append((name, v))
    return out


@register_strategy("pada")
class PADA(Strategy):
    """Path and data importance sampling (see the module docstring); one path per step."""

    def __init__(self, space: SearchSpace, momentum: float = 0.9, path_eps: float = 0.1, data: bool = True,
                 data_eps: float = 0.1, max_weight: float = 5.0) -> None:
        super().__init__(space)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        self.path_eps = _check("path_eps", path_eps, 0.0, 1.0)
        self.data_eps = _check("data_eps", data_eps, 0.0, 1.0)
        self.max_weight = _check("max_weight", max_weight, 1.0, 1e9)
        self.data = bool(data)
        self.imp: dict[str, dict[str, float]] = {}  # name -> repr(value) -> importance
        self.data_imp: torch.Tensor | None = None
        self._path_weight = 1.0
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (indices, weights)

    # paths -------------------------------------------------------------------------
    def value_probs(self, name: str, values: tuple[Any, ...]) -> np.ndarray:
        """The sampling probability of each of ``values`` of parameter ``name`` (see module docstring)."""
        seen = self.imp.get(name, {})
        fill = float(np.mean(list(seen.values()))) if seen else 1.0
        imp = np.array([seen.get(repr(v), fill) for v in values], dtype=np.float64)
        imp = np.maximum(imp, 1e-12)
        return (1.0 - self.path_eps) * imp / imp.sum() + self.path_eps / len(values)

    def _draw(self, block: Mapping[str, Any], rng: np.random.Generator, prefix: str) -> tuple[dict[str, Any], float]:
        out: dict[str, Any] = {}
        log_ratio = 0.0  # log u(path) - log q(path)
        for k, p in block.items():
            if isinstance(p, PerLayer):
                continue
            try:
                values = p.values()
            except NotImplementedError:
                out[k] = p.sample(rng)  # continuous: uniform, no importance
                continue
            probs = self.value_probs(f"{prefix}{k}", values)
            i = int(rng.choice(len(values), p=probs))
            out[k] = values[i]
            log_ratio += -np.log(len(values)) - np.log(probs[i])
        for k, p in block.items():
            if isinstance(p, PerLayer):
                layers = []
                for i in range(_count(p, out)):
                    layer, lr = self._draw(p.params, rng, f"{prefix}{k}.{i}.")
                    layers.append(layer)
                    log_ratio += lr
                out[k] = layers
        return _order(block, out), log_ratio

    def archs(self, rng: np.random.Generator) -> list[Arch]:
        for _ in range(1000):
            raw, log_ratio = self._draw(self.space.params, rng, "")
            arch = Arch(raw)
            if not self.space.constraints or self.space.is_feasible(arch):
                self._path_weight = float(min(np.exp(log_ratio), self.max_weight))
                return [arch]
        raise ArchlabError("pada: the constraints rejected 1000 importance-sampled paths; loosen them")

    # data --------------------------------------------------------------------------
    def batch(self, task: Any, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.data:
            self._batch = None
            return task.batch("train", batch_size, generator)
        n = task.num_examples("train")
        if self.data_imp is None or len(self.data_imp) != n:
            self.data_imp = torch.ones(n, dtype=torch.float64)
        q = (1.0 - self.data_eps) * self.data_imp / self.data_imp.sum() + self.data_eps / n
        idx = torch.multinomial(q, int(batch_size), replacement=True, generator=generator)
        w = (1.0 / (n * q[idx])).clamp(max=self.max_weight).float()
        self._batch = (idx, w)
        return task.examples("train", idx)

    # the step ----------------------------------------------------------------------
    def step(self, ctx: StepContext, archs: list[Arch]) -> dict[str, float]:
        logits = ctx.forward(archs[0])
        per = ctx.per_example_loss(logits)
        if self._batch is not None:
            idx, w = self._batch
            loss = (per * w.to(per.device)).mean()
            self._update_data(idx, logits.detach(), per.detach())
        else:
            loss = per.mean()
        ctx.backward(self._path_weight * loss)
        return {"loss": float(per.detach().mean()), "path_weight": self._path_weight}

    def _update_data(self, idx: torch.Tensor, logits: torch.Tensor, per: torch.Tensor) -> None:
        # ||softmax - onehot||^2 = sum p^2 - 2 p_y + 1 and p_y = exp(-CE) (classification;
        # for sequences the per-example mean CE gives the geometric-mean p_y)
        flat = logits.reshape(logits.shape[0], -1, logits.shape[-1]).float()
        p2 = torch.softmax(flat, -1).pow(2).sum(-1).mean(1)
        g = (p2 - 2.0 * torch.exp(-per.float()) + 1.0).clamp_min(0.0).sqrt().double().cpu()
        assert self.data_imp is not None
        self.data_imp[idx.cpu()] = g.clamp_min(1e-6)

    def feedback(self, archs: list[Arch], logged: dict[str, float]) -> None:
        norm = float(logged.get("grad_norm", 0.0)) / max(self._path_weight, 1e-12)
        if not np.isfinite(norm):
            return
        m = self.momentum
        for arch in archs:
            for name, v in flat_values(arch):
                slot = self.imp.setdefault(name, {})
                key = repr(v)
                slot[key] = norm if key not in slot else m * slot[key] + (1.0 - m) * norm

    def state_dict(self) -> dict[str, Any]:
        return {"imp": {k: dict(v) for k, v in self.imp.items()}, "data_imp": self.data_imp}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.imp = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in (state.get("imp") or {}).items()}
        self.data_imp = state.get("data_imp")
