"""``archlab export STORAGE STUDY TRIAL OUT_DIR``: a chosen subnet as a standalone module + config."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_export(args: argparse.Namespace) -> int:
    from archlab.search.export import export_trial

    out = export_trial(args.storage, args.study, args.trial, args.out_dir)
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trial's subnet (trained supernet weights) as a standalone module")
    p.add_argument("storage", metavar="STORAGE", help="storage URL or study.db path")
    p.add_argument("study", metavar="STUDY", help="study name")
    p.add_argument("trial", metavar="TRIAL", type=int, help="trial number")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.set_defaults(func=cmd_export)
