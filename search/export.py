"""Export a trial's subnet: experiment recorded in the study -> trained supernet -> extract -> save."""

from __future__ import annotations

from pathlib import Path
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


def export_trial(storage: Any, study_name: str, number: int, out_dir: str | Path) -> Path:
    """Write trial ``number``'s subnet, with its trained supernet weights, to ``out_dir``
    (``archlab.supernets.export.save_subnet``: safetensors + config.json with the study, trial,
    arch and metrics in ``meta``)."""
    arch, info, t = trial_arch(storage, study_name, number)
    spec = info.get("experiment_file")
    if not spec:
        raise SearchError(f"study {study_name!r} records no experiment file; export needs the experiment's trained supernet")
    path = spec.partition(":")[0]
    if path.endswith(".py") and not Path(path).is_file():
        raise SearchError(f"experiment file {path} recorded in study {study_name!r} does not exist")
    from archlab.cli.search import load_experiment_object
    from archlab.supernets.export import save_subnet

    exp = load_experiment_object(spec)
    # the study records where its supernet was trained (the experiment's runs_dir may have
    # been overridden, e.g. ``archlab demo --out``); fall back to the experiment's own
    recorded = info.get("run_dir")
    run_dir = recorded if recorded and (Path(recorded) / exp.supernet_dir().name).is_dir() else None
    net = exp.load_supernet(run_dir=run_dir)
    if net.space.fingerprint != _fingerprint(info):
        raise SearchError("the experiment's space differs from the study's space; was the experiment file edited?")
    task = getattr(exp, "task", None)
    if task is not None:
        from archlab.supernets.evaluation import extract_calibrated

        sub = extract_calibrated(net, task, arch)  # BatchNorm statistics as the search scored it
    else:
        sub = net.extract(arch)
    meta = {"study": study_name, "trial": number, "arch": arch.key, "metrics": dict(t.user_attrs.get("metrics") or {}),
            "experiment": info.get("experiment"), "files": info.get("files")}
    return save_subnet(sub, out_dir, meta)


def _fingerprint(info: dict[str, Any]) -> str:
    from archlab.spaces import SearchSpace

    return SearchSpace.from_json(info["space"]).fingerprint
