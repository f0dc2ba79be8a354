"""Guards of a training run folder: one trainer at a time, the same config on resume, and no
non-finite tensor written over a good checkpoint.

- ``RunLock(folder)``: an OS-level lock (``fcntl.flock``) on ``folder/.lock``, held while a
  trainer writes there. The kernel releases it when the process dies (``kill -9`` included),
  so a stale lock never blocks; a second trainer gets ``RunLockedError`` naming the holder's
  PID and host (written into the lock file).
- ``check_resume_config(saved, current)``: the training settings that decide the result must
  be those the checkpoint was trained with (``steps``, the device and the logging cadence may
  change); ``ConfigMismatchError`` names each differing field.
- ``first_non_finite(tree)``: the name of the first floating tensor holding NaN or inf in a
  nested state dict, so a checkpoint is checked before it replaces the previous one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archlab.core.errors import ArchlabError

try:  # POSIX; on other systems the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"

# TrainConfig fields a resumed run may change: they do not alter the trained weights
RESUMABLE_FIELDS = frozenset({"steps", "device", "num_threads", "log_every", "eval_every", "eval_batches",
                              "checkpoint_every"})


class RunLockedError(ArchlabError):
    """Another process is training in the same run folder."""


class ConfigMismatchError(ArchlabError):
    """A checkpoint was trained with other settings than the ones given to resume it."""


class RunLock:
    """Exclusive lock on ``folder/.lock`` (created if missing); use as a context manager."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``RunLockedError`` at once (never waits)."""
        if fcntl is None:  # pragma: no cover - Windows
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.folder}: another archlab trainer ({holder}) is using this run folder; "
                "wait for it to finish, or train into another folder (--out)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:  # pragma: no cover - defensive
        text = ""
    return text or "holder unknown"


def check_resume_config(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
    """Raise ``ConfigMismatchError`` naming every result-deciding field that differs.

    Fields present in only one of the two (a field added in a later archlab) are not compared.
    """
    current = json.loads(json.dumps(dict(current), default=str))  # as saved: tuples become lists
    diff = sorted(k for k in set(saved) & set(current)
                  if k not in RESUMABLE_FIELDS and saved[k] != current[k])
    if not diff:
        return
    parts = ", ".join(f"{k}={saved[k]!r} (now {current[k]!r})" for k in diff)
    raise ConfigMismatchError(
        f"{where}: the checkpoint was trained with other settings: {parts}; resume with the same "
        "settings, train into another folder, or pass --force-config (train(..., force_config=True)) "
        "to continue with the new ones")


def first_non_finite(tree: Any, prefix: str = "") -> str | None:
    """Dotted name of the first floating tensor with a NaN or inf in ``tree`` (nested dicts,
    lists, tensors), or None when every one is finite."""
    if isinstance(tree, torch.Tensor):
        inexact = tree.is_floating_point() or tree.is_complex()
        return prefix or "(tensor)" if inexact and not bool(torch.isfinite(tree).all()) else None
    if isinstance(tree, Mapping):
        items: Any = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return None
    for k, v in items:
        found = first_non_finite(v, f"{prefix}.{k}" if prefix else str(k))
        if found is not None:
            return found
    return None
