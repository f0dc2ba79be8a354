"""Errors of the search stage."""

from __future__ import annotations

from archlab.core.errors import ArchlabError


class SearchError(ArchlabError):
    """Bad search input: unknown sampler, objective or metric; a study of another space."""
