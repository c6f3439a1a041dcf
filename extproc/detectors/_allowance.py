"""A per-text work allowance for detectors whose validation calls cost far more than a character's scan.

A detector that hands candidates to a validating library (libphonenumber, python-stdnum) spends tens of
microseconds per candidate, so text made of nothing but candidates (digit groups) would cost tens of
microseconds per character. The allowance grants a fixed number of units per `find` plus one per
`chars_per_unit` characters; a detector checks it before each expensive call and, once it is spent, judges
the remaining candidates by their shape alone. Counting units, not seconds, keeps the findings
deterministic: the same text gives the same findings however busy the machine is.
"""

from __future__ import annotations


class Allowance:
    def __init__(self, text_length: int, base: int, chars_per_unit: int) -> None:
        self.left = base + text_length // chars_per_unit

    def spend(self, units: int) -> bool:
        """Take `units` if that many are left (a refused large request leaves them for smaller ones)."""
        if units > self.left:
            return False
        self.left -= units
        return True

    def charge(self, units: int) -> None:
        """Deduct work already done (its size known only afterwards); `left` may go below zero."""
        self.left -= units

    @property
    def exhausted(self) -> bool:
        return self.left <= 0
