"""``archlab predictor fit|score|show``: fit latency/accuracy predictors on your measurements.

``fit DATA`` reads a CSV or parquet (a run directory means its ``latency.parquet``):
architectures (``arch`` JSON or flat parameter columns, with ``--space``; a profiling table
carries its space) or plain numeric feature columns, plus the value column(s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.core.layout import RunLayout


def _data_path(data: str) -> Path:
    p = Path(data)
    return RunLayout(p).latency_table if p.is_dir() else p


def _load(args: argparse.Namespace, kind: str, space: Any = None) -> Any:
    from archlab.predictors import load_measurements

    if getattr(args, "space", None):
        from archlab.cli.space import load_space

        space = load_space(args.space)
    path = _data_path(args.data)
    where = {"kind": "arch"}
    if getattr(args, "profile_target", None):
        where["target"] = args.profile_target
    m = load_measurements(path, space=space, target=args.target, positive=(kind == "latency"), where=where,
                          features=args.features.split(",") if getattr(args, "features", None) else None)
    if m.frame is not None and "target" in m.frame.columns and m.frame["target"].nunique() > 1:
        found = ", ".join(sorted(m.frame["target"].unique()))
        raise ArchlabError(f"{path}: measurements of several targets ({found}); pick one with --profile-target")
    return m


def _load_features(args: argparse.Namespace, p: Any) -> Any:
    """Measurements with exactly the predictor's input columns."""
    from archlab.predictors import load_measurements

    cols = p.featurizer.input_names
    return load_measurements(_data_path(args.data), target=args.target, positive=(p.kind == "latency"),
                             features=cols, where={"kind": "arch"})


def _cls(kind: str) -> Any:
    from archlab.predictors import AccuracyPredictor, LatencyPredictor

    if kind not in ("latency", "accuracy"):
        raise ArchlabError(f"--kind must be latency or accuracy, got {kind!r}")
    return LatencyPredictor if kind == "latency" else AccuracyPredictor


def _fmt_scores(s: dict[str, float] | None) -> str:
    if not s:
        return "no scores (fit with --holdout or run 'archlab predictor score')"
    return (f"MAPE {s['mape']:.2f}%  RMSE {s['rmse']:.4g}  Kendall tau {s['kendall_tau']:.3f}  "
            f"Spearman {s['spearman']:.3f}  within 5% {100 * s['within_5']:.1f}%  within 10% {100 * s['within_10']:.1f}%")


def cmd_fit(args: argparse.Namespace) -> int:
    m = _load(args, args.kind)
    cls = _cls(args.kind)
    p = cls(m.space, model=args.model, seed=args.seed).fit(m.X, m.y, holdout=args.holdout, layer_ms=m.layer_ms)
    p.info.update({"data": str(_data_path(args.data)), "target_column": m.target})
    if m.frame is not None and "target" in m.frame.columns:
        p.info["profile_target"] = str(m.frame["target"].iloc[0])
    out = Path(args.out) if args.out else (
        RunLayout(Path(args.data)).predictor(args.kind) if Path(args.data).is_dir() else Path(f"{args.kind}.json"))
    p.save(out)
    print(f"fitted {args.kind} predictor ({args.model}) on {p.n_train} rows -> {out}")
    print(_fmt_scores(p.scores))
    return 0


def _peek(path: str | Path) -> Any:
    """The predictor file's JSON (None when unreadable: ``load`` then says why, in one line)."""
    from archlab.predictors.persistence import peek

    return peek(path) if Path(path).is_file() else None


def cmd_score(args: argparse.Namespace) -> int:
    doc = _peek(args.predictor)
    kind = doc.get("kind", "latency") if isinstance(doc, dict) else "latency"
    p = _cls(kind if kind in ("latency", "accuracy") else "latency").load(args.predictor)
    args.space = None
    args.features = None
    m = _load(args, p.kind, space=p.space) if p.space is not None else _load_features(args, p)
    s = p.score(m.X, m.y)
    print(json.dumps(s) if args.json else _fmt_scores(s))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = Path(args.predictor)
    doc = _peek(path)
    kind = doc.get("kind") if isinstance(doc, dict) else None
    p = _cls(kind if kind in ("latency", "accuracy") else "latency").load(path)
    lines = [
        f"predictor: {path}  ({p.kind}, model {p.model_name}, fitted on {p.n_train} rows)",
        f"space:     {p.space.name + ' (' + p.space.fingerprint + ')' if p.space else 'feature columns'}",
        f"features:  {len(p.featurizer.names)} ({p.featurizer.n_encoding} inputs"
        f"{', cost model ' + p.featurizer.cost if p.featurizer.cost else ''})",
        f"scores:    {_fmt_scores(p.scores)}",
    ]
    for k, v in sorted(p.info.items()):
        lines.append(f"{k + ':':<10} {v}")
    print("\n".join(lines))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("predictor", help="fit, score or show latency / accuracy predictors")
    s = p.add_subparsers(dest="predictor_command", metavar="ACTION", required=True)
    fit = s.add_parser("fit", help="fit a predictor on a CSV/parquet table or a run directory")
    fit.add_argument("data", metavar="DATA", help="CSV, parquet, or a run directory (its latency.parquet)")
    fit.add_argument("--out", default=None, metavar="PATH.json",
                     help="predictor file (default RUN_DIR/predictors/KIND.json or ./KIND.json)")
    fit.add_argument("--model", default="gbm", help="ridge | gbm | mlp | lut | ensemble (default gbm)")
    fit.add_argument("--kind", default="latency", help="latency (ms, > 0) or accuracy (default latency)")
    fit.add_argument("--target", "--latency-column", default=None, metavar="COLUMN",
                     help="value column, or a sum 'a+b' (default latency_ms / latency / ms)")
    fit.add_argument("--space", default=None, metavar="FILE.py[:NAME]", help="space of the architectures")
    fit.add_argument("--features", default=None, metavar="A,B,...", help="feature columns (no space)")
    fit.add_argument("--profile-target", default=None, dest="profile_target", metavar="SPEC",
                     help="use only rows measured on this target (profiling tables)")
    fit.add_argument("--holdout", type=float, default=0.2, help="share kept out and scored (default 0.2)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=cmd_fit)
    sc = s.add_parser("score", help="score a predictor on a table")
    sc.add_argument("predictor", metavar="PATH.json")
    sc.add_argument("data", metavar="DATA")
    sc.add_argument("--target", default=None, metavar="COLUMN")
    sc.add_argument("--profile-target", default=None, dest="profile_target", metavar="SPEC")
    sc.add_argument("--json", action="store_true", help="print the scores as JSON")
    sc.set_defaults(func=cmd_score)
    sh = s.add_parser("show", help="describe a predictor file")
    sh.add_argument("predictor", metavar="PATH.json")
    sh.set_defaults(func=cmd_show)
