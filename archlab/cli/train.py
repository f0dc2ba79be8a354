"""``archlab train EXPERIMENT.py``: train (or resume) an experiment's supernet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_train(args: argparse.Namespace) -> int:
    from archlab.experiment import load_experiment

    exp = load_experiment(args.experiment)
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.device is not None:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    run_dir = Path(args.out) if args.out else None
    result = exp.train_supernet(sharing=args.sharing, run_dir=run_dir, force_config=args.force_config, **overrides)
    folder = result.out_dir
    parts = [f"trained {exp.name} ({exp.family}, sharing {args.sharing or exp.sharing}) to step {result.steps}"]
    if result.resumed_from:
        parts.append(f"resumed from step {result.resumed_from}")
    for which, metrics in (result.metrics or {}).items():
        value = exp.task.metric_value(metrics)
        parts.append(f"{which} {exp.task.metric}={value:.4f}")
    print("; ".join(parts) + f"; files in {folder}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train or resume an experiment's weight-sharing supernet")
    p.add_argument("experiment", metavar="EXPERIMENT.py[:NAME]", help="experiment file, or a bundled example name")
    p.add_argument("--steps", type=int, default=None, help="total training steps (default: the experiment's)")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<name>)")
    p.add_argument("--sharing", metavar="NAME", default=None,
                   help="weight-sharing mode (entangled, mos-layer, mos-neuron); default: the experiment's")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the experiment's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads during training (default: torch's)")
    p.add_argument("--force-config", action="store_true", dest="force_config",
                   help="resume a checkpoint trained with other settings (default: refuse, naming the fields)")
    p.set_defaults(func=cmd_train)
