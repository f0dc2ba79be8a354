"""``PlanSampler``: the Optuna side of samplers that choose a whole architecture per trial.

A subclass implements ``plan(study, trial) -> Arch``; ``before_trial`` stores its flat
parameters and ``sample_independent`` replays them as ``space.suggest`` asks (a parameter the
plan lacks, or a value outside the asked distribution, is drawn at random). Trials that already
carry parameters (enqueued, or retried after a dead worker) replay their own.
"""

from __future__ import annotations

from typing import Any

import optuna

from archlab.spaces import Arch, SearchSpace


class PlanSampler(optuna.samplers.BaseSampler):
    """Base class; see the module docstring."""

    def __init__(self, space: SearchSpace, seed: int | None) -> None:
        self.space = space
        self._plans: dict[int, dict[str, Any]] = {}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def plan(self, study: Any, trial: Any) -> Arch:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        plan = self._plans.get(trial.number)
        if plan is not None and param_name in plan and param_distribution._contains(
            param_distribution.to_internal_repr(plan[param_name])
        ):
            return plan[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        if trial.params:  # a retried or enqueued trial replays its own parameters
            return
        self._plans[trial.number] = self.space.to_params(self.plan(study, trial))

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()
