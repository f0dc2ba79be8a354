"""Hyperparameter importance of architecture parameters for one objective (``optuna.importance``)."""

from __future__ import annotations

from typing import Any

from archlab.search.results import ResultsError

EVALUATORS = {
    "fANOVA": lambda: _optuna().importance.FanovaImportanceEvaluator(seed=0),
    "PED-ANOVA": lambda: _optuna().importance.PedAnovaImportanceEvaluator(),
    "Mean decrease impurity": lambda: _optuna().importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
}


def _optuna() -> Any:
    import optuna

    return optuna


def param_importance(storage: Any, study_name: str, objective: int, evaluator: str = "fANOVA",
                     max_trials: int = 2000, seed: int = 0) -> dict[str, float]:
    """``{param: importance}`` (normalised to sum 1, largest first) of the study's completed
    trials for objective ``objective`` (index). Studies with more than ``max_trials`` completed
    trials use a seeded sample of them (in memory; the storage is only read). Parameters that
    not every sampled trial has (per-layer slots of deeper models) are left out by Optuna."""
    import numpy as np
    import optuna

    if evaluator not in EVALUATORS:
        raise ResultsError(f"importance evaluator {evaluator!r}: allowed: {', '.join(EVALUATORS)}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        raise ResultsError(f"study {study_name!r} has {len(done)} completed trials; importance needs at least 2")
    if len(done) > max_trials:
        idx = np.sort(np.random.default_rng(seed).choice(len(done), max_trials, replace=False))
        done = [done[i] for i in idx]
    sub = optuna.create_study(directions=study.directions)  # in memory
    sub.add_trials(done)
    with _quiet():
        result = optuna.importance.get_param_importances(
            sub, evaluator=EVALUATORS[evaluator](), target=lambda t: t.values[objective]
        )
    return {k: float(v) for k, v in result.items()}


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._w.__exit__(*exc)
