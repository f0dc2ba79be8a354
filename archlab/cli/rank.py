"""``archlab rank EXPERIMENT.py``: ranking consistency of supernets against standalone training.

Samples ``--archs`` architectures (seeded; largest and smallest included), trains each alone
for ``--steps`` (cached per architecture under ``runs/<name>/rank/standalone/``, so a killed
run resumes), scores them with each supernet named by ``--sharing`` and writes
``runs/<name>/rank/report.json`` and ``report.html``. The experiment's own trained supernet
(``runs/<name>/supernet/``) is used for its sharing mode; every other mode is trained here with
the experiment's training settings (``--supernet-steps``) under ``rank/supernets/<mode>/``,
or, with ``--no-train``, is an error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def _positive(name: str, value: int | None, low: int) -> None:
    from archlab.cli import UsageError

    if value is not None and value < low:
        raise UsageError(f"--{name}: {value}; allowed: an integer >= {low}")


def cmd_rank(args: argparse.Namespace) -> int:
    from archlab.cli import UsageError

    _positive("archs", args.archs, 3)
    _positive("steps", args.steps, 1)
    _positive("supernet-steps", args.supernet_steps, 1)
    _positive("eval-batches", args.eval_batches, 1)
    _positive("top-k", args.top_k, 1)
    if args.top_k is not None and args.top_k > args.archs:
        raise UsageError(f"--top-k: {args.top_k}; allowed: 1..{args.archs} (--archs)")
    if args.seed < 0:
        raise UsageError(f"--seed: {args.seed}; allowed: an integer >= 0")
    from archlab.supernets.ranking import check_sharing, run_ranking

    modes = check_sharing(s for s in args.sharing.split(",") if s.strip())
    from archlab import load_experiment

    exp = load_experiment(args.experiment)
    out = Path(args.out) if args.out else Path(exp.run_dir) / "rank"
    given: dict[str, Any] = {}
    if not args.retrain_all and (Path(exp.run_dir) / "supernet" / "model.safetensors").is_file():
        net = exp.load_supernet()
        if net.sharing in modes:
            given[net.sharing] = net
    report = run_ranking(
        out, exp.space, exp.task, exp.train, lambda sharing: exp.build_supernet(sharing=sharing),
        sharing=modes, n_archs=args.archs, steps=args.steps, supernet_steps=args.supernet_steps,
        seed=args.seed, eval_batches=args.eval_batches, top_k=args.top_k, supernets=given,
        train_missing=not args.no_train,
    )
    print(f"ranking consistency of {len(report['archs'])} architectures ({report['metric']}, "
          f"standalone {report['settings']['standalone_steps']} steps):")
    print(f"  {'supernet':<12} {'kendall':>8} {'spearman':>9} {'top-k':>6} {'gap':>8}")
    for mode, e in report["supernets"].items():
        print(f"  {mode:<12} {_f(e['kendall_tau']):>8} {_f(e['spearman']):>9} "
              f"{_f(e['top_k_overlap']):>6} {_f(e['mean_abs_gap'], 4):>8}")
    print(f"report: {out / 'report.json'}  plot: {out / 'report.html'}")
    return 0


def _f(v: float, digits: int = 3) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def register(sub: Any) -> None:
    p = sub.add_parser("rank", help="ranking consistency: supernet metrics vs architectures trained alone")
    p.add_argument("experiment", metavar="EXPERIMENT.py[:NAME]")
    p.add_argument("--archs", type=int, default=10, help="architectures to compare (>= 3; default 10)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of each standalone model (default: the experiment's steps)")
    p.add_argument("--sharing", default="entangled",
                   help="comma-separated supernets to compare, e.g. entangled,mos-layer,mos-neuron")
    p.add_argument("--supernet-steps", type=int, default=None,
                   help="steps for supernets trained by this command (default: the experiment's steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the architecture sample and standalone init")
    p.add_argument("--eval-batches", type=int, default=None, help="validation batches per score (default: all)")
    p.add_argument("--top-k", type=int, default=None, help="k of the top-k overlap (default: archs // 4)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<name>/rank)")
    p.add_argument("--no-train", action="store_true", help="error instead of training a missing supernet")
    p.add_argument("--retrain-all", action="store_true",
                   help="do not use the experiment's trained supernet; train every mode here")
    p.set_defaults(func=cmd_rank)
