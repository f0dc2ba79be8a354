"""Between a space and Optuna: ``suggest`` on a trial and flat parameter names.

A flat name joins the path with dots: ``d_model``, ``layers.3.ffn``,
``stages.2.blocks.1.kernel``. Optuna is never imported here; a trial is anything with
``optuna.Trial``'s three ``suggest_*`` methods (``SuggestTrial``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from .errors import SpaceError
from .params import Choice, FloatRange, IntRange, Param, PerLayer, Scalar, max_count


class SuggestTrial(Protocol):
    """What ``SearchSpace.suggest`` asks of a trial: ``optuna.Trial``'s ``suggest_*`` methods."""

    def suggest_categorical(self, name: str, choices: Sequence[Scalar]) -> Scalar: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...


def _suggest_param(trial: SuggestTrial, name: str, p: Param) -> Scalar:
    if isinstance(p, Choice):
        return trial.suggest_categorical(name, list(p.values()))
    if isinstance(p, IntRange):
        return trial.suggest_int(name, p.low(), p.high(), step=p.step)
    if isinstance(p, FloatRange):
        return trial.suggest_float(name, p.low(), p.high(), log=p.log)
    raise SpaceError(f"cannot suggest {p!r}", name)  # pragma: no cover


def suggest_block(block: Mapping[str, Param], trial: SuggestTrial, prefix: str, fixed_width: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: _suggest_param(trial, prefix + k, p) for k, p in block.items()
                           if not isinstance(p, PerLayer)}
    for k, p in block.items():
        if isinstance(p, PerLayer):
            n = p.count if isinstance(p.count, int) else int(out[p.count])
            slots = max_count(block, k) if fixed_width else n
            seq = [suggest_block(p.params, trial, f"{prefix}{k}.{i}.", fixed_width) for i in range(slots)]
            out[k] = seq[:n]
    return {k: out[k] for k in block}


def collect_block(block: Mapping[str, Param], params: Mapping[str, Any], prefix: str, used: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, p in block.items():
        if not isinstance(p, PerLayer):
            name = prefix + k
            if name not in params:
                raise SpaceError(f"missing parameter {name!r}; allowed: {p.allowed()}", name)
            out[k] = p.validate(params[name], name)
            used.add(name)
    for k, p in block.items():
        if isinstance(p, PerLayer):
            n = p.count if isinstance(p.count, int) else int(out[p.count])
            out[k] = [collect_block(p.params, params, f"{prefix}{k}.{i}.", used) for i in range(n)]
    return {k: out[k] for k in block}


def flatten(block: Mapping[str, Param], value: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, p in block.items():
        if isinstance(p, PerLayer):
            for i, sub in enumerate(value[k]):
                flatten(p.params, sub, f"{prefix}{k}.{i}.", out)
        else:
            out[prefix + k] = value[k]


def all_names(block: Mapping[str, Param], prefix: str) -> Iterator[str]:
    for k, p in block.items():
        if isinstance(p, PerLayer):
            for i in range(max_count(block, k)):
                yield from all_names(p.params, f"{prefix}{k}.{i}.")
        else:
            yield prefix + k
