"""``archlab profile EXPERIMENT.py``: time architectures of the experiment's space on a target.

Results append to ``RUN_DIR/latency.parquet`` (the experiment's run directory, or ``--out``);
a killed run continues where it stopped. ``FILE.py`` may also define a supernet instead of
an experiment (then ``--out`` is required).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.core.layout import RunLayout


def _is_experiment(v: Any) -> bool:
    from archlab.experiment import Experiment

    return isinstance(v, Experiment)


def _is_supernet(v: Any) -> bool:
    return all(hasattr(v, a) for a in ("extract", "example_input", "space")) and not isinstance(v, type)


def load_profile_source(spec: str) -> Any:
    """The experiment (or supernet) in ``FILE.py[:NAME]``."""
    from archlab.loading import load_module

    path, _, name = spec.partition(":")
    module = load_module(path)
    found = {k: v for k, v in vars(module).items()
             if not k.startswith("_") and (_is_experiment(v) or _is_supernet(v))}
    if name:
        if name not in found:
            raise ArchlabError(f"{path} has no experiment or supernet {name!r}; found: {', '.join(sorted(found)) or 'none'}")
        return found[name]
    exps = {k: v for k, v in found.items() if _is_experiment(v)} or found
    if len(exps) != 1:
        raise ArchlabError(f"{path} defines {len(exps)} experiments/supernets ({', '.join(sorted(exps)) or 'none'}); "
                           f"name one as {path}:NAME")
    return next(iter(exps.values()))


def cmd_profile(args: argparse.Namespace) -> int:
    from archlab.predictors.profiling import ProfileSettings, noise_report, profile

    source = load_profile_source(args.experiment)
    overrides = {"n": args.n, "target": args.target, "seed": args.seed, "warmup": args.warmup,
                 "repeats": args.repeats, "anchors": args.anchors, "anchor_every": args.anchor_every,
                 "reference": args.reference}
    if _is_experiment(source):
        settings = ProfileSettings.from_mapping(source.profile, **overrides)
        run_dir = Path(args.out) if args.out else Path(source.run_dir)
        model = source.build_supernet()
    else:
        if not args.out:
            raise ArchlabError("profiling a supernet (not an experiment) needs --out RUN_DIR")
        settings = ProfileSettings.from_mapping({}, **overrides)
        run_dir, model = Path(args.out), source
    frame = profile(model, run_dir, settings=settings)
    rep = noise_report(frame)
    rows = frame[(frame["kind"] == "arch") & (frame["target"] == frame["target"].iloc[-1])]
    print(f"profiled {rep['n_archs']} architectures on {settings.target} -> {RunLayout(run_dir).latency_table}")
    print(f"latency: median {rows['latency_ms'].median():.3f} ms (min {rows['latency_ms'].min():.3f}, "
          f"max {rows['latency_ms'].max():.3f}); noise floor {rep['noise_floor_pct']:.2f}% "
          f"(anchor CV {rep['anchor_cv_pct']:.2f}%, drift {rep['drift_pct']:.2f}%)")
    speed = (rows["ref_scale_ms"] / rows["ref_ms"]).dropna() if "ref_ms" in rows else rows.iloc[:0]
    if len(speed):
        lo, hi = speed.quantile(0.1), speed.quantile(0.9)
        print(f"machine speed: {lo:.2f}-{hi:.2f}x its typical speed (p10-p90, from the interleaved reference "
              "architecture); latencies are scaled to the typical speed")
    if rep["drift_pct"] > max(5.0, 3 * rep["noise_floor_pct"]):
        print(f"warning: anchors drifted {rep['drift_pct']:.1f}% during the run; the machine's speed changed "
              "(other load, thermal throttling): consider re-profiling on a quiet machine")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("profile", help="measure latency of architectures on a target (resumable)")
    p.add_argument("experiment", metavar="EXPERIMENT.py[:NAME]", help="experiment (or supernet) file")
    p.add_argument("--n", type=int, default=None, help="architectures to measure (default 300 or the experiment's)")
    p.add_argument("--target", default=None, metavar="SPEC",
                   help="e.g. cpu:threads=1,batch=1 | cuda:batch=8 | onnx:threads=1 (default cpu:threads=1,batch=1)")
    p.add_argument("--out", default=None, metavar="RUN_DIR", help="run directory (default: the experiment's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per architecture (default 10)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per architecture (default 30)")
    p.add_argument("--anchors", type=int, default=None, help="anchor architectures re-timed through the run (default 3)")
    p.add_argument("--anchor-every", type=int, default=None, dest="anchor_every",
                   help="re-time anchors after this many architectures (default 25)")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                   help="interleave every timing with a fixed reference architecture and scale by its speed "
                        "(default on; --no-reference times each architecture alone)")
    p.set_defaults(func=cmd_profile)
