"""The search progress bar: trials done (rate and ETA from tqdm), feasible front size, hypervolume.

The bar is stepped by the worker after each of its trials (``step``), not through an Optuna
callback, so a search without callbacks makes Optuna fetch nothing extra per trial. Every
``refresh_s`` seconds at least (and at most about ``1 / REFRESH_FACTOR`` of the loop's time)
it re-reads the completed trials (every worker's), and keeps the feasible front incrementally:
only trials not seen before are merged into it. Front size and hypervolume are those of the
results API (``pareto_front``, ``hypervolume``): architectures counted once, objectives scaled
by the minimum and maximum over the feasible trials (maximised objectives negated), reference
point 1.1 per objective. A hidden bar costs nothing per trial.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from archlab.core.progress import progress

from .pareto import hypervolume_of, non_dominated_mask

#: a refresh may take at most this share of the time between refreshes (1 / factor)
REFRESH_FACTOR = 20.0


class SearchProgress:
    """A progress bar over one study's completed trials, with front size and hypervolume."""

    def __init__(self, study: Any, n_trials: int | None, enabled: bool | None = None, refresh_s: float = 2.0) -> None:
        import optuna

        self.study = study
        self.refresh_s = refresh_s
        self._complete = optuna.trial.TrialState.COMPLETE
        done = len(study.get_trials(deepcopy=False, states=(self._complete,)))
        self.bar = progress(total=n_trials, desc=f"search {study.study_name}", unit="trial", initial=done,
                            disable=None if enabled is None else not enabled)
        self.enabled = not self.bar.disable
        self._signs = np.array([-1.0 if d.name == "MAXIMIZE" else 1.0 for d in study.directions])
        self._seen: set[int] = set()
        self._front = np.zeros((0, len(self._signs)))
        self._keys: list[str] = []  # the front's architectures (its size counts each once)
        self._hi = np.full(len(self._signs), -np.inf)
        self._next = 0.0
        if self.enabled:
            self._refresh()

    def step(self) -> None:
        """One more trial finished in this worker."""
        if not self.enabled:
            return
        if time.monotonic() < self._next:
            self.bar.update(1)
            return
        self._refresh()

    def _refresh(self) -> None:
        start = time.monotonic()
        trials = self.study.get_trials(deepcopy=False, states=(self._complete,))
        self.bar.update(max(0, len(trials) - self.bar.n))
        new = [t for t in trials if t.number not in self._seen]
        self._seen.update(t.number for t in new)
        feasible = [t for t in new if t.values is not None and all(v <= 0 for v in t.constraints.values())]
        if feasible:
            Y = np.asarray([t.values for t in feasible], dtype=float).reshape(len(feasible), -1) * self._signs
            self._hi = np.maximum(self._hi, Y.max(axis=0))
            both = np.vstack([self._front, Y])
            keys = np.array([*self._keys, *(t.user_attrs.get("arch") or f"#{t.number}" for t in feasible)], dtype=object)
            mask = non_dominated_mask(both)
            self._front, self._keys = both[mask], list(keys[mask])
        if len(self._front):
            lo = self._front.min(axis=0)
            Z = (self._front - lo) / np.where(self._hi > lo, self._hi - lo, 1.0)
            hv = hypervolume_of(Z, np.full(Z.shape[1], 1.1))
            self.bar.set_postfix(front=len(set(self._keys)), hv=f"{hv:.4f}", refresh=False)
        done = time.monotonic()
        self._next = done + max(self.refresh_s, REFRESH_FACTOR * (done - start))

    def close(self) -> None:
        self.bar.close()
