"""The dashboard's server process: Streamlit's own command line, warmed up as it starts.

``archlab app`` runs ``python -m archlab.app.serve run app/main.py ...``: the same as
``streamlit run``, but before the server starts, ``warm_up`` runs, so the first visitor does not
pay the process's first-use costs (about a second: importing Optuna's storage, SQLAlchemy's
SQLite dialect, Alembic, plotly's figure classes, and their first calls); then, while the
server starts, a background thread runs ``prefetch``: the study the app shows first is read
into the app's cache, so a visitor who arrives after that finds its trials read (a
50,000-trial study: about 1.5 s of reading saved); one who arrives earlier waits for the same
read, never for a second one.

Imports happen in one thread at a time: Streamlit and everything the warm-up touches are
imported (and first used) in the main thread before any other thread exists. Two threads that
import the same packages at once can deadlock on Python's per-module import locks, and Python
breaks such a deadlock by handing one of them a partially initialised module (seen as
``AttributeError: partially initialized module 'pandas' has no attribute 'Series'``, which
killed the server in most launches on a busy machine). The prefetch thread then only imports
the small ``archlab.app.cache`` (and a PostgreSQL driver where one is needed).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: trials of the throwaway study ``warm_up`` reads
WARM_TRIALS = 48


def warm_up() -> float:
    """Go once through what the Pareto explorer does on a throwaway study in a temporary
    directory (never the user's storage): write it, open it read-only, read its trials, count
    them, compute the front and hover summaries, build the figure and its JSON. Returns the
    seconds it took."""
    t = time.perf_counter()
    from archlab.app import analysis, figures, sources
    from archlab.app.demo import make_demo_study
    from archlab.search.results import load_trials
    from archlab.search.storage import close_storage, open_storage

    with tempfile.TemporaryDirectory(prefix="archlab-warm-") as tmp:
        url = make_demo_study(Path(tmp) / "warm.db", "warm", n_trials=WARM_TRIALS, seed=0)
        storage = open_storage(url, read_only=True)
        try:
            df = load_trials(storage, "warm")
            sources.study_stamp(storage, "warm")
            data = analysis.explorer_data(df, df.attrs["objectives"][:2], df.attrs["constraints"])
            hover = dict(zip(df["number"].tolist(), analysis.summaries(df)))
            figures.pareto_figure(data, hover).to_json()
        finally:
            close_storage(storage)
    return time.perf_counter() - t


def prefetch() -> str | None:
    """Read the trials of the study the app opens first (the sidebar's default: the last
    study of the first storage of ``$ARCHLAB_APP_TARGET``) through the app's cached reader;
    later reads of it ask only for new trials. Returns the study's name, or ``None``."""
    from archlab.app import cache, sources

    found = sources.find_sources(None)
    if not found:
        return None
    study = sources.default_study(cache.study_names(found[0].url))
    if study is not None:
        cache.reader(found[0].url, study).read()
    return study


def _quietly(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:  # only costs the first visitor some time; the page reports real errors
        print(f"archlab app: {step.__name__} skipped ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)


def _prefetch_once_serving(wait_s: float = 120.0) -> None:
    """``prefetch`` once Streamlit's runtime exists (its caches are the runtime's then, and the
    server's start-up imports are behind it), or after ``wait_s`` seconds."""
    from streamlit import runtime

    deadline = time.monotonic() + wait_s
    while not runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _quietly(prefetch)


def main() -> None:
    """Streamlit's command line, after the warm-up (main thread) and with the prefetch (thread)."""
    from streamlit.web import bootstrap  # noqa: F401  (the server's own modules, imported here first)
    from streamlit.web.cli import main as streamlit_main

    _quietly(warm_up)  # before any other thread exists: see the module docstring
    threading.Thread(target=_prefetch_once_serving, name="archlab-prefetch", daemon=True).start()
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
