"""``EHVISampler``: Bayesian multi-objective search for expensive objectives (``sampler="ehvi"``).

Each trial proposes one architecture not evaluated (nor running) in the study yet:

1. the first ``n_startup`` (default 5) are random draws;
2. then one Gaussian process per objective (and per constraint) is conditioned on every
   distinct evaluated architecture (``space.encode(normalized=True)``, then the space's
   structure features: for a cell space the live-edge encoding of ``archlab.spaces.cells`` and
   how many live edges carry each operation, and when no objective is cheap (a latency modelled
   too) how many edges carry it, live or dead (``space.cost_features``); see
   ``archlab.search.surrogate.GPModel``; beyond ``max_condition`` of them, on the best-ranked
   half and a random rest, which bounds the cost per trial);
3. a candidate pool is built around the current front (LINAS-style local search): every
   one-parameter move and some two-parameter moves and crossovers of the ``n_parents``
   best-ranked feasible architectures, plus ``n_random`` random draws;
4. each candidate is scored by the expected hypervolume improvement of its predicted
   objectives over the feasible front (losses scaled to the observed range, reference point
   ``ref_margin`` = 0.5 of that range beyond the worst observed value), times its predicted
   probability of meeting every constraint (``trial.set_constraint`` values, feasible when
   <= 0); architectures still running count as already on the front at their predicted values;
5. ``local_rounds`` times, the moves of the best-scored candidates join the pool (a hill
   climb on the acquisition); the best candidate overall is proposed;
6. every ``focus_every``-th proposal (a focus step) is instead the candidate with the largest
   expected improvement of one modelled objective alone (cycling over them), its pool built
   around the best values of that objective: the hypervolume acquisition is myopic and spends
   most evaluations where the front is crowded, so the front's far end (the most accurate
   architectures) is found late without it.

Each modelled objective's GP is fitted on the normal scores of its values' ranks
(``surrogate.Warp``), so the long tail of collapsed architectures at chance accuracy does not
drag the model; standardised values instead were clearly worse. The hypervolume improvement is
computed on those rank scores (``acq_scale="rank"``); on the values (``acq_scale="value"``) it
was a tie.

Cheap objectives (``known``: a fitted latency predictor, an analytic count) are not modelled:
they are computed for every candidate, only the expensive one is predicted, and with one
uncertain objective among two or three the expected improvement is exact up to a 24-node
quadrature of its predictive distribution (``archlab.search.surrogate.ehvi_known``). A
constraint on a cheap metric is met by every proposal. A cheap value that only approximates what
is then observed (a latency predictor's value against the measured latency) is exact only for
the first ``model_known_after`` (default 150) distinct evaluations; from then on that objective
is modelled like the others, with the cheap value as an extra input of the GPs, so the model
learns where the predictor is wrong. A cheap value equal to the observed one (the objective is
the predictor itself) stays exact.

Every default above was chosen by measurement on NAS-Bench-201 (real accuracies and device
latencies, paired by seed against the alternatives): ``docs/search_measurements.md`` lists each
lever tried, kept or not, with its figures, and where the remaining gap lies (the accuracy
model's precision at 50-100 points, not the pool or the acquisition). The benchmark's figures
are in ``bench/results/search.json`` and the README.

The sampler's state is the study itself: a resumed study, another worker, or a new process
rebuilds the model from the stored trials, so nothing is evaluated twice. Workers on one study
plan one at a time, each recording its planned architecture on its trial before the next plans
(``archlab.search.plan_sampler``), so two workers never propose the same architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from archlab.spaces import Arch, SearchSpace

from .ehvi_planner import Planner
from .errors import SearchError
from .plan_sampler import PLANNED, PlanSampler

__all__ = ["EHVISampler", "Planner"]


class EHVISampler(PlanSampler):
    """Optuna sampler around ``Planner`` (see module docstring); options as ``Planner``'s.

    ``known``: ``{objective or constraint metric name: callable archs -> values}`` for cheap
    metrics (a fitted latency predictor, an analytic parameter count), in the metric's own
    unit and direction; they are computed for every candidate instead of modelled, and a
    constraint on one of them (``run_search(constraints=...)``) is met by every proposal.
    Names are checked against the study's objectives and constraints at the first trial.
    """

    def __init__(self, space: SearchSpace, *, seed: int | None = None,
                 known: Mapping[str, Callable[[Sequence[Arch]], Any]] | None = None, **options: Any) -> None:
        super().__init__(space, seed)
        for name, fn in (known or {}).items():
            if not callable(fn):
                raise SearchError(f"known[{name!r}] must be a callable archs -> values, got {type(fn).__name__}")
        self.known_fns = dict(known or {})
        self.seed, self.options = seed, dict(options)
        self.planner = Planner(space, seed=seed, **options)
        self._configured = not self.known_fns
        self._seen: dict[int, tuple[Arch, list[float], list[float]] | None] = {}

    def plan(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Arch:
        if not self._configured:
            self.planner = self._planner_for(study)
            self._configured = True
        archs, Y, C, pending, taken = self._read(study, trial.number)
        return self.planner.propose(archs, Y, C, pending, taken)

    def _planner_for(self, study: Any) -> Planner:
        """A ``Planner`` told which of the study's objectives and constraints are cheap."""
        info = study.user_attrs.get("archlab") or {}
        names = [o["name"] for o in info.get("objectives", [])]
        bounds = dict(info.get("constraints") or {})
        bad = [n for n in self.known_fns if n not in names and n not in bounds]
        if bad or len(names) != len(study.directions):
            allowed = ", ".join(list(dict.fromkeys(names + list(bounds)))) or "none recorded"
            raise SearchError(f"known: {', '.join(map(repr, bad)) or 'objectives'} not among this study's "
                              f"objectives and constraints ({allowed})")
        max_dir = optuna.study.StudyDirection.MAXIMIZE
        known = {j: _signed(self.known_fns[n], -1.0 if study.directions[j] == max_dir else 1.0)
                 for j, n in enumerate(names) if n in self.known_fns}
        cnames = list(bounds) + (["space"] if self.space.constraints else [])
        cheap = {n: b for n, b in bounds.items() if n in self.known_fns}

        def known_feasible(archs: Sequence[Arch]) -> np.ndarray:
            ok = np.ones(len(archs), dtype=bool)
            for n, bound in cheap.items():
                ok &= np.asarray(self.known_fns[n](archs), dtype=float).reshape(len(archs)) <= bound
            return ok

        return Planner(self.space, seed=self.seed, known=known, known_feasible=known_feasible if cheap else None,
                       modelled=[i for i, n in enumerate(cnames) if n not in cheap], **self.options)

    def reseed_rng(self) -> None:
        self.planner.rng = self.planner.moves.rng = np.random.default_rng()
        super().reseed_rng()

    def _read(self, study: Any, current: int) -> tuple[list[Arch], np.ndarray, np.ndarray | None, list[Arch], set[str]]:
        """Distinct completed architectures (first evaluation of each) with signed losses and
        constraint values, running architectures, and every key seen in the study."""
        S = optuna.trial.TrialState
        signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        archs, rows, cons, pending = [], [], [], []
        taken: set[str] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == current:
                continue
            if t.state == S.COMPLETE and t.number not in self._seen:
                self._seen[t.number] = self._parse(t)
            entry = self._seen.get(t.number) if t.state == S.COMPLETE else None
            if entry is not None:
                if entry[0].key not in taken:
                    archs.append(entry[0])
                    rows.append(np.asarray(entry[1]) * signs)
                    cons.append(entry[2])
                taken.add(entry[0].key)
            elif t.state in (S.RUNNING, S.WAITING) and (t.params or PLANNED in t.user_attrs):
                try:  # a trial planned by another worker and not yet suggested: its planned key
                    a = Arch.from_json(t.user_attrs[PLANNED]) if PLANNED in t.user_attrs else \
                        self.space.from_params(t.params, strict=False)
                except Exception:  # a trial still being suggested has part of its parameters
                    continue
                pending.append(a)
                taken.add(a.key)
        Y = np.array(rows, dtype=float).reshape(-1, len(signs))
        width = min((len(c) for c in cons), default=0)
        C = np.array([c[:width] for c in cons], dtype=float).reshape(len(cons), width) if width else None
        return archs, Y, C, pending, taken

    def _parse(self, t: Any) -> tuple[Arch, list[float], list[float]] | None:
        if t.values is None or any(not np.isfinite(v) for v in t.values):
            return None
        key = t.user_attrs.get("arch")
        try:
            a = Arch.from_json(key) if key else self.space.from_params(t.params, strict=False)
        except Exception:  # parameters of another shape: not this space's trial
            return None
        return a, list(t.values), [float(v) for v in t.constraints.values()] if t.constraints else []


def _signed(fn: Callable[[Sequence[Arch]], Any], sign: float) -> Callable[[Sequence[Arch]], np.ndarray]:
    """``fn``'s values as losses (``sign`` -1 for a maximised objective)."""
    return lambda archs: sign * np.asarray(fn(archs), dtype=float).reshape(len(archs))
