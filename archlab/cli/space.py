"""``archlab space show|check``: inspect a search space and validate architecture files."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from archlab.core.io import read_text
from archlab.spaces import SearchSpace, SpaceError


def load_space(spec: str) -> SearchSpace:
    """A ``SearchSpace`` from ``FILE.py[:NAME]``; an ``Experiment`` there gives its space."""
    from archlab.experiment import Experiment
    from archlab.loading import load_object

    obj = load_object(spec, (SearchSpace, Experiment), "search space")
    return obj if isinstance(obj, SearchSpace) else obj.space


def _size_text(space: SearchSpace) -> str:
    try:
        n = space.size
    except SpaceError as exc:
        return f"infinite ({exc})"
    if n < 10**15:
        return f"{n:,}"
    digits = math.log10(n)  # exact integers of any size; all digits only while they fit a line
    approx = f"~{10 ** (digits % 1):.3f}e+{int(digits)}"
    return f"{n:,} ({approx})" if digits < 60 else f"{approx} ({int(digits) + 1} digits)"


def _extreme(space: SearchSpace, which: str) -> str:
    try:
        arch = space.smallest() if which == "smallest" else space.largest()
    except SpaceError as exc:
        return f"undefined: {exc}"
    return space.summary(arch)


def cmd_show(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    lines: list[Any] = [
        f"space:     {space.name}  (fingerprint {space.fingerprint})",
        "parameters:",
        space.describe(),
        f"size:      {_size_text(space)}",
        f"encoding:  {space.encoding_size} features",
        f"smallest:  {_extreme(space, 'smallest')}",
        f"largest:   {_extreme(space, 'largest')}",
        f"sample:    {space.summary(space.sample(args.seed))}  (seed {args.seed})",
    ]
    if space.constraints:
        lines.insert(3, "constraints: " + ", ".join(c.name for c in space.constraints))
    print("\n".join(lines))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    path = Path(args.arch)
    arch = space.validate(read_text(path, "architecture JSON"))
    print(f"ok: {path} is a valid architecture of {space.name}: {space.summary(arch)}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("space", help="inspect a search space or check an architecture file")
    s = p.add_subparsers(dest="space_command", metavar="ACTION", required=True)
    show = s.add_parser("show", help="parameters, size, smallest, largest and one sample")
    show.add_argument("space", metavar="FILE.py[:NAME]", help="Python file and the name of its SearchSpace")
    show.add_argument("--seed", type=int, default=0, help="seed of the sample shown (default 0)")
    show.set_defaults(func=cmd_show)
    check = s.add_parser("check", help="validate an architecture JSON file against a space")
    check.add_argument("space", metavar="FILE.py[:NAME]")
    check.add_argument("arch", metavar="ARCH.json")
    check.set_defaults(func=cmd_check)
