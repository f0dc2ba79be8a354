"""Cached reads for the pages: one read-only storage per URL, trials frames keyed on the
storage, the study and its trial counts (a new or finished trial invalidates them; the new
frame comes from an incremental reader that reads only new and unfinished trials).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from archlab.search.results import TrialsReader, hypervolume_history, list_studies, load_trials
from archlab.search.storage import open_storage

from . import analysis, sources

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


@st.cache_resource(show_spinner=False, max_entries=16)
def storage(url: str) -> BaseStorage:
    """The read-only Optuna storage of ``url`` (kept for the app's lifetime): SQLite in
    ``mode=ro``, PostgreSQL in read-only transactions, journal files never appended, no table
    ever created or stamped (``archlab.search.storage.open_storage(url, read_only=True)``)."""
    return open_storage(url, read_only=True)


def stamp(url: str, study: str) -> tuple[int, int, int, int]:
    """Current trial counts of a study (uncached: one cheap COUNT query each)."""
    return sources.study_stamp(storage(url), study)


def study_names(url: str) -> list[str]:
    return sources.study_names(storage(url))


@st.cache_resource(show_spinner=False, max_entries=64)
def reader(url: str, study: str) -> TrialsReader:
    """The study's incremental reader (kept for the app's lifetime): a live study's refresh
    reads only its new and unfinished trials."""
    return TrialsReader(storage(url), study)


@st.cache_data(show_spinner="Reading trials…", max_entries=32)
def _trials(url: str, study: str, key: tuple[int, ...]) -> pd.DataFrame:
    return reader(url, study).read()


def trials(url: str, study: str) -> pd.DataFrame:
    """``load_trials`` of a study, cached until its trial counts change."""
    return _trials(url, study, stamp(url, study))


@st.cache_data(show_spinner="Summarising studies…", max_entries=8)
def _studies(url: str, key: tuple[Any, ...]) -> pd.DataFrame:
    counts = {k[0]: tuple(k[1:]) for k in key}
    return list_studies(storage(url), trials_of=lambda name: _trials(url, name, counts[name]) if name in counts
                        else load_trials(storage(url), name))


def studies(url: str) -> pd.DataFrame:
    """``list_studies`` of a storage, cached until any study's counts change."""
    names = study_names(url)
    return _studies(url, tuple((n, *stamp(url, n)) for n in names))


@st.cache_data(show_spinner="Computing the front…", max_entries=64)
def _explorer(url: str, study: str, key: tuple[int, ...], axes: tuple[tuple[str, str], ...],
              bounds: tuple[tuple[str, float], ...]) -> analysis.ExplorerData:
    df = _trials(url, study, key)
    data = analysis.explorer_data(df, [{"name": n, "direction": d} for n, d in axes], dict(bounds))
    return data


def explorer(url: str, study: str, axes: list[dict[str, str]], bounds: dict[str, float]) -> analysis.ExplorerData:
    """Front, thinned clouds and hypervolume for chosen axes and constraint bounds (cached)."""
    return _explorer(url, study, stamp(url, study), tuple((a["name"], a["direction"]) for a in axes),
                     tuple(sorted((k, float(v)) for k, v in bounds.items())))


@st.cache_data(show_spinner=False, max_entries=64)
def _summaries(url: str, study: str, key: tuple[int, ...], numbers: np.ndarray) -> list[str]:
    return analysis.summaries(analysis.rows_of(_trials(url, study, key), numbers))


def summaries(url: str, study: str, numbers: list[int]) -> list[str]:
    """One-line architecture summaries of the given trials (cached; the numbers travel as an
    array, which Streamlit hashes in one go, not number by number)."""
    return _summaries(url, study, stamp(url, study), np.asarray(numbers, dtype=np.int64))


@st.cache_data(show_spinner="Computing hypervolume history…", max_entries=64)
def _history(url: str, study: str, key: tuple[int, ...], bounds: Any) -> pd.DataFrame:
    df = _trials(url, study, key)
    if bounds is None:
        return hypervolume_history(df)
    best, worst = (dict(b) for b in bounds)
    return hypervolume_history(df, bounds=(best, worst))


def history(url: str, study: str, bounds: tuple[dict, dict] | None = None) -> pd.DataFrame:
    """``hypervolume_history`` (optionally on a common ``(best, worst)`` scale), cached."""
    frozen = None if bounds is None else tuple(tuple(sorted(b.items())) for b in bounds)
    return _history(url, study, stamp(url, study), frozen)


@st.cache_data(show_spinner="Computing parameter importance…", max_entries=32)
def _importance(url: str, study: str, key: tuple[int, ...], objective: int, evaluator: str,
                max_trials: int) -> dict[str, float]:
    from .importance import param_importance

    return param_importance(storage(url), study, objective, evaluator, max_trials)


def importance(url: str, study: str, objective: int, evaluator: str, max_trials: int) -> dict[str, float]:
    """Parameter importance for one objective (cached on the study's counts)."""
    return _importance(url, study, stamp(url, study), objective, evaluator, max_trials)


@st.cache_data(show_spinner=False, ttl=30)
def run_files(run_dir: str | None) -> dict[str, Any]:
    return sources.run_files(run_dir)
