"""Export a study's trial as a standalone subnet, with an experiment the *user* names.

A study is data: it may come from someone else or from a shared database. So export never
imports the experiment file a study records (``experiment_file`` is informational); the user
gives the experiment (``FILE.py[:NAME]`` or a bundled example name) and export checks it
against what the search recorded:

- the space fingerprint (``SearchSpace.fingerprint``) must equal the study's, always;
- the SHA-256 of the experiment file must equal the one the search recorded
  (``experiment_sha256``); ``allow_mismatch=True`` skips this check only (an edited file
  with the same space, e.g. new search settings).

The file's hash is checked *before* the file is imported, so a file that fails it never runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.core.layout import RunLayout
from archlab.experiment import Experiment, experiment_source, file_sha256, load_experiment
from archlab.spaces import Arch, SearchSpace


class ExperimentMismatch(ArchlabError):
    """The experiment given to export is not the one the study was searched with."""


def trial_arch(storage: Any, study_name: str, number: int) -> tuple[Arch, dict[str, Any], Any]:
    """``(arch, the study's archlab attributes, frozen trial)`` of trial ``number`` of
    ``study_name`` in ``storage`` (URL, path or Optuna storage); ``SearchError`` unless the study
    was made by archlab and the trial is complete."""
    import optuna

    from archlab.search.errors import SearchError
    from archlab.search.results import ATTR_KEY, _load_study

    study = _load_study(storage, study_name)
    info = dict(study.user_attrs.get(ATTR_KEY) or {})
    if not info.get("space"):
        raise SearchError(f"study {study_name!r} was not created by archlab (no space recorded)")
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        raise SearchError(f"study {study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    t = found[0]
    if t.state != optuna.trial.TrialState.COMPLETE:
        raise SearchError(f"trial {number} is {t.state.name}, not COMPLETE")
    space = SearchSpace.from_json(info["space"])
    arch = space.validate(t.user_attrs["arch"], check_constraints=False) if t.user_attrs.get("arch") else space.from_params(t.params)
    return arch, info, t


def recorded_fingerprint(info: dict[str, Any], study_name: str) -> str:
    """The study's space fingerprint, from its recorded space (and checked against the
    recorded ``space_fingerprint`` when the search wrote one)."""
    fp = SearchSpace.from_json(info["space"]).fingerprint
    stated = info.get("space_fingerprint")
    if stated is not None and stated != fp:
        raise ExperimentMismatch(f"study {study_name!r} is inconsistent: its space has fingerprint {fp} "
                                 f"but it records {stated}")
    return fp


def checked_experiment(experiment: str | Experiment, info: dict[str, Any], study_name: str,
                       allow_mismatch: bool = False) -> tuple[Experiment, list[str]]:
    """``(experiment, notes)``: the experiment the user gave, checked against the study's
    record (see the module docstring); ``notes`` are lines worth showing (a skipped check)."""
    notes: list[str] = []
    recorded_sha = info.get("experiment_sha256")
    sha: str | None
    if isinstance(experiment, str):
        file, _ = experiment_source(experiment)
        sha = file_sha256(file)
    elif isinstance(experiment, Experiment):
        file, sha = Path(experiment.source_file or "<in-memory experiment>"), experiment.source_sha256
    else:
        raise ArchlabError(f"experiment: expected FILE.py[:NAME], a bundled example name or an Experiment, "
                           f"got {type(experiment).__name__}")
    if recorded_sha and sha != recorded_sha:
        if not allow_mismatch:
            raise ExperimentMismatch(
                f"{file} (sha256 {str(sha)[:12]}) is not the experiment file study {study_name!r} was searched "
                f"with (sha256 {recorded_sha[:12]}); give that file, or --allow-mismatch if you edited it "
                "without changing the space")
        notes.append(f"note: {file} differs from the file the search used (allowed by --allow-mismatch)")
    elif not recorded_sha:
        notes.append(f"note: study {study_name!r} records no experiment file hash; only the space is checked")
    exp = load_experiment(experiment) if isinstance(experiment, str) else experiment
    fp = recorded_fingerprint(info, study_name)
    if exp.space.fingerprint != fp:
        raise ExperimentMismatch(
            f"experiment {exp.name!r} has space {exp.space.name!r} with fingerprint {exp.space.fingerprint}, "
            f"but study {study_name!r} was searched over fingerprint {fp}; give the experiment the search used")
    return exp, notes


def export_trial(storage: Any, study_name: str, number: int, out_dir: str | Path,
                 experiment: str | Experiment, *, allow_mismatch: bool = False,
                 notes: list[str] | None = None) -> Path:
    """Write trial ``number``'s subnet, with the experiment's trained supernet weights, to
    ``out_dir`` (``save_subnet``: safetensors + ``config.json`` with the task's input
    preprocessing and, in ``meta``, the study, trial, arch and metrics). ``experiment`` is
    checked as ``checked_experiment`` says; lines about skipped checks go to ``notes``."""
    from archlab.supernets.export import save_subnet
    from archlab.supernets.training.evaluation import extract_calibrated

    arch, info, t = trial_arch(storage, study_name, number)
    exp, found = checked_experiment(experiment, info, study_name, allow_mismatch)
    if notes is not None:
        notes.extend(found)
    # the study records where its supernet was trained (the experiment's runs_dir may have
    # been overridden, e.g. ``archlab demo --out``); weights are read with safe loaders only
    recorded = info.get("run_dir")
    run_dir = recorded if recorded and RunLayout(Path(recorded)).supernet.is_dir() else None
    net = exp.load_supernet(run_dir=run_dir)
    sub = extract_calibrated(net, exp.task, arch)  # BatchNorm statistics as the search scored it
    meta = {"study": study_name, "trial": number, "arch": arch.key, "metrics": dict(t.user_attrs.get("metrics") or {}),
            "experiment": exp.name, "space_fingerprint": exp.space.fingerprint, "files": info.get("files")}
    return save_subnet(sub, out_dir, meta, preprocessing=exp.task.preprocessing())


__all__ = ["ExperimentMismatch", "checked_experiment", "export_trial", "recorded_fingerprint", "trial_arch"]
