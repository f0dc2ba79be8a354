"""Exception types shared by every layer of archlab.

Library code raises these with a message that says what was wrong and what is allowed;
only the command line turns them into an exit status and a one-line message.
"""

from __future__ import annotations


class ArchlabError(Exception):
    """Base of every error archlab raises on bad input (a user's file, argument or data)."""


class SpaceError(ArchlabError, ValueError):
    """A search space or an architecture is malformed.

    ``path`` is the location of the offending field in the same spelling the message uses,
    for example ``stages[2].blocks[1].kernel`` (``""`` for the space itself).
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message
