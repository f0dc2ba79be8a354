"""The search progress bar: trials done (rate and ETA from tqdm), feasible front size, hypervolume.

Front and hypervolume are recomputed at most every ``refresh_s`` seconds and only when the bar
is shown, so a hidden bar costs nothing per trial.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from archlab.spaces.io import progress

from .pareto import hypervolume_of, non_dominated_mask


class SearchProgress:
    """An Optuna callback driving ``archlab.spaces.io.progress`` for one study."""

    def __init__(self, study: Any, n_trials: int | None, enabled: bool | None = None, refresh_s: float = 2.0) -> None:
        import optuna

        self.study = study
        self.refresh_s = refresh_s
        self._complete = optuna.trial.TrialState.COMPLETE
        done = self._done()
        self.bar = progress(total=n_trials, desc=f"search {study.study_name}", unit="trial", initial=done,
                            disable=None if enabled is None else not enabled)
        self.enabled = not self.bar.disable
        self._last = 0.0

    def _done(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(self._complete,)))

    def __call__(self, study: Any, trial: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.refresh_s:
            self.bar.update(1)
            return
        self._last = now
        trials = study.get_trials(deepcopy=False, states=(self._complete,))
        self.bar.update(max(0, len(trials) - self.bar.n))
        signs = np.array([-1.0 if d.name == "MAXIMIZE" else 1.0 for d in study.directions])
        Y = np.array([t.values for t in trials if all(v <= 0 for v in t.constraints.values())], dtype=float)
        if len(Y):
            Y = Y.reshape(len(Y), -1) * signs
            lo, hi = Y.min(axis=0), Y.max(axis=0)
            Z = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
            front = Z[non_dominated_mask(Z)]
            hv = hypervolume_of(front, np.full(Z.shape[1], 1.1))
            self.bar.set_postfix(front=len(front), hv=f"{hv:.4f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
