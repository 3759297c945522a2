"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["MicronetError", "InputError"]


class MicronetError(Exception):
    """Base class for expected, user-facing failures (bad input, missing data, bad config)."""


class InputError(MicronetError, ValueError):
    """An input file or argument cannot be used; the message names it and the problem."""
