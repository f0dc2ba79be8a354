"""``archlab search EXPERIMENT.py``: run (or continue) the experiment's multi-objective search."""

from __future__ import annotations

import argparse
from typing import Any


def load_experiment_object(spec: str) -> Any:
    """The experiment in ``FILE.py[:NAME]`` (``archlab.experiment`` when installed, else any
    object with ``name``, ``space`` and ``search`` attributes)."""
    try:
        from archlab.experiment import load_experiment
    except ImportError:
        load_experiment = None
    if load_experiment is not None:
        return load_experiment(spec)
    from archlab.loading import load_module
    from archlab.search.errors import SearchError

    path, _, name = spec.partition(":")
    module = load_module(path)
    found = {k: v for k, v in vars(module).items()
             if not k.startswith("_") and hasattr(v, "space") and hasattr(v, "search") and hasattr(v, "name")}
    if name:
        if name not in found:
            raise SearchError(f"{path} has no experiment {name!r}; experiments in it: {', '.join(sorted(found)) or 'none'}")
        return found[name]
    if len(found) != 1:
        raise SearchError(f"{path} defines {len(found)} experiments ({', '.join(sorted(found)) or 'none'}); name one as {path}:NAME")
    return next(iter(found.values()))


def cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from archlab.search import hypervolume, load_trials, pareto_front, run_search
    from archlab.search.samplers import check_sampler
    from archlab.search.settings import search_settings
    from archlab.search.storage import storage_url

    if args.sampler is not None:
        check_sampler(args.sampler)
    exp = load_experiment_object(args.experiment)
    if getattr(args, "method", None) is not None:  # one-shot search (archlab.cli.oneshot)
        from archlab.cli.oneshot import cmd_oneshot

        return cmd_oneshot(args, exp)
    settings = search_settings(exp, {"n_trials": args.trials, "timeout": args.timeout, "workers": args.workers,
                                     "storage": args.storage, "sampler": args.sampler, "seed": args.seed})
    objectives = settings.pop("objectives")
    path, sep, name = args.experiment.partition(":")
    exp_file = (str(Path(path).resolve()) + sep + name) if Path(path).is_file() else args.experiment
    study = run_search(exp.space, objectives, experiment=exp, experiment_file=exp_file, **settings)
    storage = settings.get("storage") or f"sqlite:///{Path(exp.run_dir) / 'study.db'}"
    df = load_trials(storage_url(storage) if isinstance(storage, str) else storage, study.study_name)
    front = pareto_front(df)
    print(f"study {study.study_name}: {int((df['state'] == 'COMPLETE').sum())} complete trials, "
          f"front {len(front)}, hypervolume {hypervolume(df):.4f}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="multi-objective architecture search (Optuna); re-run to continue")
    p.add_argument("experiment", metavar="EXPERIMENT.py[:NAME]")
    p.add_argument("--trials", type=int, default=None, help="total completed trials of the study")
    p.add_argument("--timeout", default=None, help="stop after this long (seconds or 8h, 30m, 1h30m)")
    p.add_argument("--workers", type=int, default=None, help="worker processes on this machine (default 1)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///runs/<name>/study.db)")
    p.add_argument("--sampler", default=None, help="nsga2 (default), nsga3, tpe, random, gp, predictor")
    p.add_argument("--seed", type=int, default=None, help="sampler seed (worker i uses seed + i)")
    from archlab.cli.oneshot import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_search)
