"""Type-checks the installed package ``archlab`` with mypy (settings: ``[tool.mypy]``).

The repository keeps one folder per subpackage (``spaces/`` is ``archlab.spaces``, see
``[tool.setuptools] package-dir``), and the editable install maps them with an import hook
that mypy cannot follow. This script lays the package out as mypy expects, as a tree of
symbolic links under ``.mypy_cache/archlab-tree`` (rebuilt on every run, so new files and
sub-packages are seen at once), runs ``mypy -p archlab`` on it and prints mypy's report with
the paths of the checkout (``spaces/arch.py:12: error: ...``). The exit status is mypy's:
0 clean, 1 type errors, 2 a failure of mypy itself.

Usage: ``.venv/bin/python scripts/typecheck.py [mypy options] [files]``; files given (``*.py``, absolute
paths) are checked instead of the package, against it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mypy depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".mypy_cache"
TREE = CACHE / "archlab-tree"
PACKAGE = "archlab"
_LOCATION = re.compile(r"^(archlab/[^:]+)(:.*)$")


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Top-level packages of ``archlab`` and their folders, from pyproject's ``package-dir``."""
    with open(root / "pyproject.toml", "rb") as fh:
        mapping = tomllib.load(fh)["tool"]["setuptools"]["package-dir"]
    if PACKAGE not in mapping:
        raise SystemExit(f"typecheck: pyproject's package-dir has no {PACKAGE!r} entry")
    return {name: root / folder for name, folder in mapping.items() if name.count(".") <= 1}


def build_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """Lay ``archlab`` out under ``tree`` as links to the checkout's folders; returns the
    folder that holds the ``archlab`` package."""
    if tree.exists():
        shutil.rmtree(tree)
    top = tree / PACKAGE
    top.mkdir(parents=True)
    dirs = package_dirs(root)
    for entry in sorted(dirs.pop(PACKAGE).iterdir()):
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in sorted(dirs.items()):
        (top / name.split(".", 1)[1]).symlink_to(folder, target_is_directory=True)
    return tree


def checkout_path(line: str, tree: Path = TREE, root: Path = ROOT) -> str:
    """One line of mypy's report with a path in the link tree turned into the checkout's."""
    match = _LOCATION.match(line)
    if not match:
        return line
    real = Path(os.path.realpath(tree / match.group(1)))
    try:
        return f"{real.relative_to(root)}{match.group(2)}"
    except ValueError:
        return line


def main(argv: list[str]) -> int:
    """Run mypy over the whole package; prints its report, returns its exit status."""
    tree = build_tree()
    targets = [] if any(a.endswith(".py") for a in argv) else ["-p", PACKAGE]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(CACHE), *targets, *argv]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        print(checkout_path(line))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
