"""``archlab search EXPERIMENT --method darts|darts2|gdas|drnas|tanglenas``: one-shot search.

The logic lives in ``archlab.search.oneshot_study`` (given the experiment's sources and
settings by ``archlab.searching.oneshot_experiment``); this module parses the options and prints
the outcome (the final architecture, where the result JSON went, the study's trial count).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from archlab.search.errors import SearchError


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; values are JSON when they parse as JSON, else text."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SearchError(f"--method-option: {item!r} is not KEY=VALUE (e.g. steps=200)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def cmd_oneshot(args: argparse.Namespace, experiment: Any) -> int:
    from archlab.search.oneshot_study import check_method
    from archlab.searching import experiment_file_of, oneshot_experiment

    check_method(args.method)
    study, result = oneshot_experiment(experiment, args.method, parse_options(args.method_option),
                                       storage=args.storage, seed=args.seed,
                                       experiment_file=experiment_file_of(args.experiment))
    out = experiment.layout.oneshot_result(result.method, result.config["seed"])
    print(f"{result.method}: {experiment.space.summary(result.arch)} after {result.config['steps']} steps "
          f"({result.wall_s:.1f} s); history {out}; study {study.study_name}: {len(study.trials)} trials")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=None,
                   help="one-shot differentiable search instead of a sampler: darts, darts2, gdas, drnas, tanglenas")
    p.add_argument("--method-option", action="append", metavar="KEY=VALUE",
                   help="one-shot setting (steps, batch_size, lr, latency_weight, arch_options={...}); repeatable")
