"""``PlanSampler``: the Optuna side of samplers that choose a whole architecture per trial.

A subclass implements ``plan(study, trial) -> Arch``; ``before_trial`` stores its flat
parameters and ``sample_independent`` replays them as ``space.suggest`` asks (a parameter the
plan lacks, or a value outside the asked distribution, is drawn at random). Trials that already
carry parameters (enqueued, or retried after a dead worker) replay their own.

Several workers on one study: with ``serial`` set (the runner gives the study's cross-process
lock), a worker plans under it and records the planned architecture's key on its trial (user
attribute ``PLANNED``) before letting go, so the next worker's plan sees it as running. Without
that, two workers planning at the same moment saw the same study and could propose the same
architecture: with ``count="distinct"``, 2 forked workers and 10 trials, 11 trials completed
9 distinct cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import optuna
from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from archlab.spaces import Arch, SearchSpace

from . import optuna_compat as compat

#: user attribute of a trial: the key of the architecture planned for it (set before it runs)
PLANNED = "planned"


class PlanSampler(optuna.samplers.BaseSampler):
    """Base class; see the module docstring."""

    def __init__(self, space: SearchSpace, seed: int | None) -> None:
        self.space = space
        self._plans: dict[int, dict[str, Any]] = {}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        #: a lock shared by the study's workers (see the module docstring); ``None``: one worker
        self.serial: Any = None

    def plan(self, study: Study, trial: FrozenTrial) -> Arch:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial.number)
        if plan is not None and param_name in plan and param_distribution._contains(
            param_distribution.to_internal_repr(plan[param_name])
        ):
            return plan[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if trial.params:  # a retried or enqueued trial replays its own parameters
            return
        with self.serial if self.serial is not None else nullcontext():
            arch = self.plan(study, trial)
            self._plans[trial.number] = self.space.to_params(arch)
            if self.serial is not None:
                compat.set_trial_user_attr(study, trial, PLANNED, arch.key)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()
