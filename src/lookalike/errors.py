"""The base of lookalike's errors: a message a user can act on, and the exit code it means.

Every typed error of the library derives from `LookalikeError`, so the CLI turns any of
them into one line and `exit_code`, and Python callers can catch them all at once.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """A problem with the user's input or setup, explained in the message."""

    exit_code: int = 2
    """What the command line exits with (2: a usage error)."""
