"""Small helpers every stage uses: atomic file writes and the progress bar.

They live in the bottom layer (``archlab.spaces``) so that supernets, predictors and search
can share them without importing upwards. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


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
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
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


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def progress(
    iterable: Any = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    disable: bool | None = None,
) -> Any:
    """The one progress bar of archlab (tqdm): rate, ETA and postfix metrics.

    Disabled when ``ARCHLAB_PROGRESS=0`` or when standard error is not a terminal and
    ``ARCHLAB_PROGRESS`` is unset, so logs and CI stay clean. Use ``bar.set_postfix(...)``
    for live metrics such as the loss.
    """
    from tqdm.auto import tqdm

    if disable is None:
        env = os.environ.get("ARCHLAB_PROGRESS")
        disable = (env == "0") if env is not None else not sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable,
        dynamic_ncols=True,
        smoothing=0.1,
    )
