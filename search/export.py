"""A study's trial as an architecture (the data side of export; ``archlab.export`` pairs it
with an experiment given by the user, never one named by the study)."""

from __future__ import annotations

from typing import Any

from .errors import SearchError
from .results import ATTR_KEY, _load_study


def trial_arch(storage: Any, study_name: str, number: int) -> tuple[Any, dict[str, Any], Any]:
    """``(arch, study archlab attrs, frozen trial)`` of trial ``number``; checks it is complete."""
    import optuna

    from archlab.spaces import SearchSpace

    study = _load_study(storage, study_name)
    info = dict(study.user_attrs.get(ATTR_KEY) or {})
    if not info.get("space"):
        raise SearchError(f"study {study_name!r} was not created by archlab (no space recorded)")
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise SearchError(f"study {study_name!r} has no trial {number} (trials 0..{len(study.get_trials(deepcopy=False)) - 1})")
    t = trials[0]
    if t.state != optuna.trial.TrialState.COMPLETE:
        raise SearchError(f"trial {number} is {t.state.name}, not COMPLETE")
    space = SearchSpace.from_json(info["space"])
    arch = space.validate(t.user_attrs["arch"], check_constraints=False) if t.user_attrs.get("arch") else space.from_params(t.params)
    return arch, info, t
