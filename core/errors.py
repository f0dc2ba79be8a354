"""The base exception of archlab.

Library code raises subclasses of ``ArchlabError`` with a message that says what was wrong
and what is allowed; only the command line turns them into an exit status and a one-line
message.
"""

from __future__ import annotations


class ArchlabError(Exception):
    """Base of every error archlab raises on bad input (a user's file, argument or data)."""
