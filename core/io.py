"""Atomic file writes and bounded text reads, shared by every floor of archlab.

A write goes to a temporary file in the target's folder, is flushed and fsynced, then
renamed over the target: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload


@overload
def atomic_open(path: str | os.PathLike[str],
                mode: Literal["w"] = "w") -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_open(path: str | os.PathLike[str],
                mode: Literal["wb"]) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A process killed half-way leaves the old file (or none), never a half-written one.
    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        fh: IO[Any]
        with (os.fdopen(fd, "w", encoding="utf-8") if mode == "w" else os.fdopen(fd, "wb")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # e.g. ENOSPC from write(): say which file, and that the old one is intact
            raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}; "
                                     "the previous file (if any) is kept") from exc
        raise


def read_text(path: str | os.PathLike[str], what: str = "input") -> str:
    """The UTF-8 text of the file ``path``; ``ArchlabError`` naming the file (and ``what`` it
    should be) when it is missing, a folder, unreadable or not UTF-8."""
    from .errors import ArchlabError

    p = Path(path)
    if not p.exists():
        raise ArchlabError(f"{p}: no such file (expected a {what} file)")
    if p.is_dir():
        raise ArchlabError(f"{p}: is a folder, expected a {what} file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ArchlabError(f"{p}: cannot read the {what} file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchlabError(f"{p}: not a UTF-8 text {what} file (byte {exc.start} is {data[exc.start]:#04x})") from None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
