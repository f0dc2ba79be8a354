"""The one progress bar of archlab (tqdm), quiet in logs and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, TypeVar, overload

if TYPE_CHECKING:
    from tqdm import tqdm as Bar

T = TypeVar("T")
_LOCK_SET = False  # tqdm's lock replaced (once: a bar in use holds the one it took)


@overload
def progress(iterable: Iterable[T], *, total: float | None = None, desc: str = "", unit: str = "it",
             initial: float = 0, disable: bool | None = None) -> Bar[T]: ...
@overload
def progress(iterable: None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             initial: float = 0, disable: bool | None = None) -> Bar[NoReturn]: ...
def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    disable: bool | None = None,
) -> Bar[T] | Bar[NoReturn]:
    """The one progress bar of archlab (tqdm): rate, ETA and postfix metrics.

    Disabled when ``ARCHLAB_PROGRESS=0`` or when standard error is not a terminal and
    ``ARCHLAB_PROGRESS`` is unset, so logs and CI stay clean. Use ``bar.set_postfix(...)``
    for live metrics such as the loss.
    """
    from tqdm.auto import tqdm

    global _LOCK_SET
    if not _LOCK_SET:
        import threading

        from tqdm import tqdm as base

        # a thread lock: tqdm's default also makes a named semaphore, which a worker killed with
        # kill -9 leaks (a warning from the resource tracker); archlab draws bars from one process
        base.set_lock(threading.RLock())
        _LOCK_SET = True
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
