"""``archlab export STORAGE STUDY TRIAL OUT_DIR --experiment FILE_OR_NAME``: a chosen subnet as a
standalone module + config. The experiment comes from the command line, never from the study."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_export(args: argparse.Namespace) -> int:
    from archlab.export import export_trial

    notes: list[str] = []
    out = export_trial(args.storage, args.study, args.trial, args.out_dir, args.experiment,
                       allow_mismatch=args.allow_mismatch, notes=notes)
    for line in notes:
        print(line, file=sys.stderr)
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trial's subnet (trained supernet weights) as a standalone module")
    p.add_argument("storage", metavar="STORAGE", help="storage URL or study.db path")
    p.add_argument("study", metavar="STUDY", help="study name")
    p.add_argument("trial", metavar="TRIAL", type=int, help="trial number")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--experiment", metavar="FILE.py[:NAME]", required=True,
                   help="the experiment the search ran (a file or a bundled example name); checked against "
                        "the study's space fingerprint and file hash, never taken from the study")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="export even if the experiment file's hash differs (the space must still match)")
    p.set_defaults(func=cmd_export)
