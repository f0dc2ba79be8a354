"""Integers too long to print: Python refuses ``str()`` of integers over 4,300 digits, so
messages about a user's absurd number say its size instead."""

from __future__ import annotations

import math


def n_digits(value: int) -> int:
    """Exact number of decimal digits of ``abs(value)`` (1 for 0), without converting to text."""
    v = abs(int(value))
    if v < 10:
        return 1
    d = int(math.log10(v)) + 1  # float log10 can be one off next to a power of ten
    if 10 ** (d - 1) > v:
        return d - 1
    if 10**d <= v:
        return d + 1
    return d


def show_int(value: int, width: int = 30) -> str:
    """``str(value)``, or ``<an integer of N digits>`` when it has more than ``width`` digits."""
    d = n_digits(value)
    return str(value) if d <= width else f"<an integer of {d} digits>"
