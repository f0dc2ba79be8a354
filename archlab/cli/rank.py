"""``archlab rank EXPERIMENT.py``: ranking consistency of supernets against standalone training.

Samples ``--archs`` architectures uniformly (seeded; ``--with-extremes`` adds the largest and
smallest, reported apart), trains each alone for ``--steps`` with ``--standalone-seeds`` seeds
(cached per architecture under ``runs/<name>/rank/standalone/``, so a killed run resumes),
scores them with each supernet named by ``--sharing`` and writes
``runs/<name>/rank/report.json`` and ``report.html``: Kendall tau and Spearman with bootstrap
95 % intervals, the paired difference of each mode against the first, the proxies
(parameters, MACs, width) and, with two or more standalone seeds, the seed-to-seed tau (the
ceiling). Supernets trained by different settings (or code versions) are refused unless
``--allow-mismatch``. The experiment's own trained supernet
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

from archlab.core.layout import RANK_REPORT


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
    _positive("standalone-seeds", args.standalone_seeds, 1)
    if args.top_k is not None and args.top_k > args.archs:
        raise UsageError(f"--top-k: {args.top_k}; allowed: 1..{args.archs} (--archs)")
    if args.seed < 0:
        raise UsageError(f"--seed: {args.seed}; allowed: an integer >= 0")
    from archlab.supernets.ranking.run import check_sharing, run_ranking

    modes = check_sharing(s for s in args.sharing.split(",") if s.strip())
    from archlab import load_experiment

    exp = load_experiment(args.experiment)
    out = Path(args.out) if args.out else exp.layout.rank_dir
    given, sources = _supernets(exp, modes, args)
    report = run_ranking(
        out, exp.space, exp.task, exp.train, lambda sharing: exp.build_supernet(sharing=sharing),
        sharing=modes, n_archs=args.archs, steps=args.steps, supernet_steps=args.supernet_steps,
        seed=args.seed, eval_batches=args.eval_batches, top_k=args.top_k, supernets=given,
        train_missing=False, sources=sources, extremes=args.with_extremes,
        standalone_seeds=args.standalone_seeds, allow_mismatch=args.allow_mismatch,
    )
    st = report["stats"]
    print(f"ranking consistency of {len(report['archs'])} architectures ({report['metric']}, standalone "
          f"{report['settings']['standalone_steps']} steps x {args.standalone_seeds} seed(s)), 95 % intervals:")
    first = modes[0]
    print(f"  {'':<12} {'kendall tau':<22} {'spearman':<22} {'tau - ' + first:<24} {'top-k':>6} {'gap':>8}")
    for mode, e in report["supernets"].items():
        m = st["methods"][mode]
        d = m.get(f"minus_{first}")
        print(f"  {mode:<12} {_ci(m['kendall']):<22} {_ci(m['spearman']):<22} {_ci(d, True) if d else '':<24} "
              f"{_f(e['top_k_overlap']):>6} {_f(e['mean_abs_gap'], 4):>8}")
    for name, m in st["proxies"].items():
        print(f"  {name + ' (proxy)':<12} {_ci(m['kendall']):<22} {_ci(m['spearman']):<22}")
    if "ceiling" in st:
        print(f"  seed-to-seed ceiling: tau {_ci(st['ceiling'])}")
    if "with_extremes" in report:
        w = report["with_extremes"]["methods"]
        print("  with the largest and smallest added: " + ", ".join(f"{k} tau {_ci(v['kendall'])}" for k, v in w.items()))
    for line in report["settings_mismatches"]:
        print(f"  warning: settings differ (--allow-mismatch): {line}")
    from archlab.rank_plot import write_plot

    print(f"report: {out / RANK_REPORT}  plot: {write_plot(report, out, exp.space)}")
    return 0


def _ci(i: Any, signed: bool = False) -> str:
    """``0.512 [0.401, 0.603]`` from an interval dict (``*`` when a difference excludes 0)."""
    if not i or i.get("estimate") is None:
        return "nan"
    fmt = "+.3f" if signed else ".3f"
    star = "*" if signed and i.get("excludes_zero") else ""
    return f"{i['estimate']:{fmt}} [{_f(i.get('low'))}, {_f(i.get('high'))}]{star}"


def _supernets(exp: Any, modes: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trained supernet of every mode: the experiment's own (``exp.supernet_dir(mode)``,
    final weights) where present, else trained now into that folder (resumable) with the
    experiment's settings and ``--supernet-steps``; with ``--no-train`` a missing one is an error."""
    import json

    from archlab.cli import UsageError
    from archlab.supernets.ranking.run import trained_supernet

    given: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for mode in modes:
        folder = Path(exp.supernet_dir(mode))
        final = folder / "config.json"
        if (folder / "model.safetensors").is_file() and final.is_file():
            given[mode] = exp.load_supernet(mode)
            saved = json.loads(final.read_text(encoding="utf-8"))
            steps = saved.get("steps")
            sources[mode] = {"train": saved.get("train", exp.train.to_dict()), "code": saved.get("code")}
        elif args.no_train:
            raise UsageError(f"--no-train: no trained {mode!r} supernet in {folder}; "
                             f"train it first (archlab train) or drop --no-train")
        else:
            steps = int(args.supernet_steps or exp.train.steps)
            given[mode] = trained_supernet(mode, exp.build_supernet, exp.task, exp.train, folder, steps)
            saved = json.loads(final.read_text(encoding="utf-8")) if final.is_file() else {}
            sources[mode] = {"train": saved.get("train", exp.train.to_dict()), "code": saved.get("code")}
        sources[mode].update({"source": str(folder), "supernet_steps": steps})
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
    p.add_argument("--with-extremes", action="store_true",
                   help="also rank the largest and smallest architectures (reported apart: they inflate tau)")
    p.add_argument("--standalone-seeds", type=int, default=1,
                   help="standalone trainings per architecture (>= 2 reports the seed-to-seed ceiling; default 1)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare supernets trained by different settings or code versions (listed as warnings)")
    p.set_defaults(func=cmd_rank)
