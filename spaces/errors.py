"""The search space's own error type (the base lives in ``archlab.core.errors``)."""

from __future__ import annotations

from archlab.core.errors import ArchlabError

__all__ = ["ArchlabError", "SpaceError"]


class SpaceError(ArchlabError, ValueError):
    """A search space or an architecture is malformed.

    ``path`` is the location of the offending field in the same spelling the message uses,
    for example ``stages[2].blocks[1].kernel`` (``""`` for the space itself).
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message
