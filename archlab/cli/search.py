"""``archlab search EXPERIMENT.py``: run (or continue) the experiment's multi-objective search."""

from __future__ import annotations

import argparse
from typing import Any


def worker_settings(spec: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``run_search`` keyword arguments for the experiment ``spec`` (``FILE.py[:NAME]``) with
    command-line ``overrides``; also the recipe each spawned worker runs to build its own copy."""
    from archlab.experiment import load_experiment
    from archlab.searching import experiment_file_of, search_kwargs

    return search_kwargs(load_experiment(spec), overrides, experiment_file_of(spec))


def cmd_search(args: argparse.Namespace) -> int:
    import functools
    import os
    import sys
    import warnings
    from pathlib import Path

    from archlab.experiment import load_experiment
    from archlab.search import load_trials, run_search
    from archlab.search.samplers import check_sampler
    from archlab.search.storage import storage_url
    from archlab.search.summary import objective_units, search_report
    from archlab.search.workers import WorkerWarning
    from archlab.searching import experiment_file_of, search_kwargs

    if args.sampler is not None:
        check_sampler(args.sampler)
    if getattr(args, "method", None) is not None:  # one-shot search (archlab.cli.oneshot)
        from archlab.cli.oneshot import cmd_oneshot

        return cmd_oneshot(args, load_experiment(args.experiment))
    overrides = {"n_trials": args.trials, "timeout": args.timeout, "workers": args.workers, "storage": args.storage,
                 "sampler": args.sampler, "seed": args.seed, "max_failures": args.max_failures}
    exp = load_experiment(args.experiment)
    kwargs = search_kwargs(exp, overrides, experiment_file_of(args.experiment))
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # a worker killed or stopped: one line each
            warnings.simplefilter("always", RuntimeWarning)
            study = run_search(**kwargs, worker_recipe=functools.partial(worker_settings, args.experiment, overrides))
    finally:
        # shown after leaving the block (inside it, showwarning appends to `caught`: a loop without
        # end), each distinct warning once, as Python's default filter does
        shown_once: set[tuple[str, type, str, int]] = set()
        for w in caught:
            key = (str(w.message), w.category, str(w.filename), w.lineno)
            if key in shown_once:
                continue
            shown_once.add(key)
            if issubclass(w.category, WorkerWarning):
                print(f"archlab: warning: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    storage = kwargs.get("storage") or str(exp.layout.study_db)
    df = load_trials(storage_url(storage) if isinstance(storage, (str, Path)) else storage, study.study_name)
    shown = storage if isinstance(storage, str) else None
    if shown and "://" not in shown and not os.path.relpath(shown).startswith(".."):
        shown = os.path.relpath(shown)
    export_root = os.path.relpath(exp.layout.export_dir)
    for line in search_report(df, units=objective_units(kwargs["objectives"], exp.task.metric), storage=shown,
                              experiment=args.experiment, export_root=export_root):
        print(line)
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
    p.add_argument("--max-failures", type=int, default=None,
                   help="stop after this many failed trials in this run (default max(10, trials))")
    from archlab.cli.oneshot import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_search)
