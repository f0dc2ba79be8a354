"""Shared page furniture: the selected storage and study, friendly failures, small formatters."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from archlab.core.errors import ArchlabError

from . import cache

CTX_KEY = "_archlab_ctx"
PENDING_TRIAL = "_archlab_pending_trial"
PENDING_STUDY = "_archlab_pending_study"
# page scripts, relative to main.py
PAGES = {
    "studies": "views/studies.py",
    "pareto": "views/pareto.py",
    "hypervolume": "views/hypervolume.py",
    "compare": "views/compare.py",
    "detail": "views/detail.py",
    "importance": "views/importance.py",
    "predictors": "views/predictors.py",
    "live": "views/live.py",
    "routing": "views/routing.py",
}


@dataclass(frozen=True)
class Context:
    """What the sidebar selected: storage ``url`` (as given), its ``label``, the run directory
    beside it (predictor and ranking files), the study (None when the storage has none) and
    every study name in the storage."""

    url: str | None
    label: str
    run_dir: str | None
    study: str | None
    studies: tuple[str, ...] = ()
    error: str | None = None


def esc(value: object) -> str:
    """``value`` (a study name, objective, attribute, file name, error text: data, not markup) as
    a Markdown code span for Streamlit Markdown (messages, captions, headings, widget and metric
    labels): nothing inside a code span is Markdown, HTML, a Streamlit directive, a formula or a
    link, and GFM's autolinks (which Streamlit applies to text after escapes are resolved, so
    backslash escapes cannot stop them) skip code. The fence is one backtick longer than any run
    of backticks in the text; line breaks become spaces."""
    text = " ".join(str(value).splitlines())
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_BACKTICKS = re.compile(r"`+")


def context() -> Context:
    ctx = st.session_state.get(CTX_KEY)
    return ctx if ctx is not None else Context(None, "", None, None)


@contextlib.contextmanager
def friendly(what: str = "") -> Iterator[None]:
    """Show a one-line message instead of a traceback for anything that goes wrong inside."""
    try:
        yield
    except ArchlabError as exc:
        st.error(f"{what}{esc(exc)}", icon=":material/error:")
    except Exception as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        st.error(f"{what}{type(exc).__name__}: {esc(msg)}", icon=":material/error:")


def study_trials(ctx: Context) -> pd.DataFrame | None:
    """The selected study's trials, or None after telling the user why there are none."""
    if ctx.error:
        st.error(esc(ctx.error), icon=":material/error:")
        return None
    if ctx.url is None:
        st.info("No storage found. Start the app with `archlab app --storage URL` or `archlab app RUNS_DIR` "
                "(a runs directory: every `*/study.db` in it).")
        return None
    if ctx.study is None:
        st.info(f"The storage **{esc(ctx.label)}** holds no studies yet. Run `archlab search EXPERIMENT.py` to create one.")
        return None
    df = cache.trials(ctx.url, ctx.study)
    if not len(df):
        st.info(f"Study **{esc(ctx.study)}** has no trials yet.")
        return None
    return df


def selected(ctx: Context) -> tuple[str, str]:
    """The storage URL and study name of ``ctx``, for a view whose ``study_trials`` returned a
    frame (which needs both); ``ArchlabError`` when either is missing."""
    if ctx.url is None or ctx.study is None:
        raise ArchlabError("no study is selected")
    return ctx.url, ctx.study


def completed(df: pd.DataFrame, study: str | None) -> pd.DataFrame | None:
    """Completed trials, or None after a friendly message (e.g. a study whose trials all failed)."""
    done = df[df["state"] == "COMPLETE"]
    if not len(done):
        counts = ", ".join(f"{n} {str(s).lower()}" for s, n in df["state"].value_counts().items())
        st.warning(f"Study **{esc(study)}** has no completed trials yet ({counts}). Nothing to plot until a trial "
                   "completes; failed trials are listed on the Studies page.")
        return None
    return done


def open_trial(number: int) -> None:
    """Show trial ``number`` on the Architecture detail page."""
    st.session_state[PENDING_TRIAL] = int(number)
    st.switch_page(PAGES["detail"])


def pick_study(name: str) -> None:
    """Make ``name`` the sidebar's study (applied on the next run, before the widget exists)."""
    st.session_state[PENDING_STUDY] = name
    st.rerun()


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
