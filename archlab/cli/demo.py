"""``archlab demo``: the end-to-end tour on an embedded default (no downloads)."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    from archlab.demo import run_demo

    run_demo(out=args.out, quick=args.quick, log=lambda line: print(line, flush=True))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the bundled digits experiment")
    p.add_argument("--out", default="runs", help="runs directory (default: runs)")
    p.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke test")
    p.set_defaults(func=cmd_demo)
