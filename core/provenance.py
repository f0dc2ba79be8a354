"""Code provenance: which version of archlab produced a result (standard library only)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

# the source folders installed as archlab subpackages (see pyproject.toml)
SOURCE_DIRS = ("archlab", "core", "spaces", "supernets", "predictors", "search")


def source_hash(root: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) over the ``*.py`` files of archlab's source folders
    under ``root`` (default: the repository or install root holding this package), in path
    order; identical code gives the identical hash whatever git says."""
    base = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for d in SOURCE_DIRS:
        for p in sorted((base / d).rglob("*.py")):
            h.update(str(p.relative_to(base)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def code_version(root: str | Path | None = None) -> dict[str, str | None]:
    """``{"package": version, "git": git describe --always --dirty or None, "source": source_hash}``."""
    from importlib.metadata import PackageNotFoundError, version

    base = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        pkg: str | None = version("archlab")
    except PackageNotFoundError:
        pkg = None
    try:
        git: str | None = subprocess.run(
            ["git", "-C", str(base), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"package": pkg, "git": git, "source": source_hash(base)}
