"""Where the dashboard's studies come from: storages found from the command line, opened read-only.

No Streamlit here (the caching wrappers live in ``archlab.app.cache``). The app never writes to a
storage: SQLite files are opened through SQLite's read-only URI mode, PostgreSQL sessions are
read-only transactions, and Optuna's table creation is skipped, so the schema is never touched.
The storages are those the server was started with (``$ARCHLAB_APP_TARGET``), or the study
files found under its runs directory; a visitor chooses among them and never names one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlab.core.layout import STUDY_DB, RunLayout
from archlab.search.storage import count_by_state, redact, sqlite_file, storage_url

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

ENV_TARGET = "ARCHLAB_APP_TARGET"


@dataclass(frozen=True)
class Source:
    """One storage the app can show: ``url`` as the user gave it (also used in the export
    command), a short ``label`` and the run directory beside it, if any."""

    url: str
    label: str
    run_dir: str | None = None


def find_sources(target: str | None) -> list[Source]:
    """Storages for ``target``: a storage URL, an SQLite/journal file, a run directory holding
    ``study.db``, or a runs directory (every ``*/study.db`` below it, by name). ``None`` reads
    ``$ARCHLAB_APP_TARGET`` and falls back to ``./runs``."""
    target = target if target is not None else os.environ.get(ENV_TARGET) or "runs"
    if "://" in target:
        run_dir = _run_dir_of(target)
        return [Source(target, redact(target), run_dir)]
    path = Path(target).expanduser()
    if path.is_dir():
        if RunLayout(path).study_db.is_file():
            return [Source(storage_url(RunLayout(path).study_db), path.resolve().name, str(path.resolve()))]
        found = sorted(p for p in path.glob(f"*/{STUDY_DB}") if p.is_file())
        return [Source(storage_url(p.resolve()), p.parent.name, str(p.parent.resolve())) for p in found]
    if path.exists():
        url = storage_url(path.resolve())
        return [Source(url, path.name, _run_dir_of(url))]
    return []


def _run_dir_of(url: str) -> str | None:
    """The run directory of an SQLite storage named ``study.db`` (``runs/<name>/study.db``)."""
    path = sqlite_file(url)
    return str(path.parent) if path is not None and path.name == STUDY_DB else None


def default_study(names: list[str]) -> str | None:
    """The study the app shows first (none picked, none in the URL): the newest one."""
    return names[-1] if names else None


def study_names(storage: BaseStorage) -> list[str]:
    """Names of every study in ``storage``, in creation order."""
    return [s.study_name for s in storage.get_all_studies()]


def study_stamp(storage: BaseStorage, study_name: str) -> tuple[int, int, int, int]:
    """``(n_trials, n_complete, n_fail, n_running)``: cheap counts that change whenever the
    study gains a trial or a trial finishes (the cache key of everything computed from it).

    Optuna's ``RDBStorage.get_n_trials`` loads every trial to count them (seconds for a study
    of 50,000), so on a database the counts come from one ``GROUP BY`` query on Optuna's
    ``trials`` table (``archlab.search.storage.count_by_state``, read only). Other storages
    hold their trials in memory and count them in one pass."""
    counts = count_by_state(storage, storage.get_study_id_from_name(study_name))
    return (sum(counts.values()), counts.get("COMPLETE", 0), counts.get("FAIL", 0), counts.get("RUNNING", 0))


def run_files(run_dir: str | None) -> dict[str, Any]:
    """The run directory's predictor files (``predictors/*.json``, parsed) and ranking report
    (``rank/report.json``), when they exist: ``{"predictors": {name: doc}, "rank": doc|None,
    "errors": [text]}``. Unreadable files are reported, not raised."""
    out: dict[str, Any] = {"predictors": {}, "rank": None, "errors": []}
    if not run_dir:
        return out
    root = RunLayout(Path(run_dir))
    for p in sorted(root.predictors.glob("*.json")):
        try:
            out["predictors"][p.stem] = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            out["errors"].append(f"{p}: {exc}")
    rank = root.rank_report
    if rank.is_file():
        try:
            out["rank"] = json.loads(rank.read_text())
        except (OSError, ValueError) as exc:
            out["errors"].append(f"{rank}: {exc}")
    return out
