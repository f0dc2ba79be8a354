"""``archlab rank EXPERIMENT.py``: ranking consistency of supernets against standalone training.

Samples ``--archs`` architectures (seeded; largest and smallest included), trains each alone
for ``--steps`` (cached per architecture under ``runs/<name>/rank/standalone/``, so a killed
run resumes), scores them with each supernet named by ``--sharing`` and writes
``runs/<name>/rank/report.json`` and ``report.html``. The experiment's own trained supernet
of each mode (``exp.supernet_dir(mode)``: ``runs/<name>/supernet/`` or
``runs/<name>/supernet-<mode>/``) is used when its final weights exist; a missing one is
trained there with the experiment's training settings (``--supernet-steps``, default the
experiment's steps; resumable), or, with ``--no-train``, is an error.
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
    given, sources = _supernets(exp, modes, args)
    report = run_ranking(
        out, exp.space, exp.task, exp.train, lambda sharing: exp.build_supernet(sharing=sharing),
        sharing=modes, n_archs=args.archs, steps=args.steps, supernet_steps=args.supernet_steps,
        seed=args.seed, eval_batches=args.eval_batches, top_k=args.top_k, supernets=given,
        train_missing=False, sources=sources,
    )
    print(f"ranking consistency of {len(report['archs'])} architectures ({report['metric']}, "
          f"standalone {report['settings']['standalone_steps']} steps):")
    print(f"  {'supernet':<12} {'kendall':>8} {'spearman':>9} {'top-k':>6} {'gap':>8}")
    for mode, e in report["supernets"].items():
        print(f"  {mode:<12} {_f(e['kendall_tau']):>8} {_f(e['spearman']):>9} "
              f"{_f(e['top_k_overlap']):>6} {_f(e['mean_abs_gap'], 4):>8}")
    print(f"report: {out / 'report.json'}  plot: {out / 'report.html'}")
    return 0


def _supernets(exp: Any, modes: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trained supernet of every mode: the experiment's own (``exp.supernet_dir(mode)``,
    final weights) where present, else trained now into that folder (resumable) with the
    experiment's settings and ``--supernet-steps``; with ``--no-train`` a missing one is an error."""
    import json

    from archlab.cli import UsageError
    from archlab.supernets.ranking import trained_supernet

    given: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for mode in modes:
        folder = Path(exp.supernet_dir(mode))
        final = folder / "config.json"
        if (folder / "model.safetensors").is_file() and final.is_file():
            given[mode] = exp.load_supernet(mode)
            steps = json.loads(final.read_text(encoding="utf-8")).get("steps")
        elif args.no_train:
            raise UsageError(f"--no-train: no trained {mode!r} supernet in {folder}; "
                             f"train it first (archlab train) or drop --no-train")
        else:
            steps = int(args.supernet_steps or exp.train.steps)
            given[mode] = trained_supernet(mode, exp.build_supernet, exp.task, exp.train, folder, steps)
        sources[mode] = {"source": str(folder), "supernet_steps": steps}
    return given, sources


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
    p.set_defaults(func=cmd_rank)
