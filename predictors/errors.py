"""Errors of the predictors and profiling layer."""

from __future__ import annotations

from archlab.core.errors import ArchlabError


class PredictorError(ArchlabError, ValueError):
    """Bad input to a predictor: data, a file, a model name."""


class ProfilingError(ArchlabError, ValueError):
    """Bad input to the profiler: a target string, settings, a run directory."""
