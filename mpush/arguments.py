"""Checks of constructor arguments shared by the services and adapters.

Pure: no Twisted, no I/O. Each raises ``ValueError`` naming the first bad
argument, as ``f"{name} must be >= 0, not {value!r}"``; NaN passes none.
"""

from __future__ import annotations

__all__ = ["require_non_negative", "require_positive"]


def require_non_negative(**values: float) -> None:
    """Every value is a number >= 0 (a delay, a grace, a size that may be 0)."""
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, not {value!r}")


def require_positive(**values: float) -> None:
    """Every value is a number > 0 (an interval, a timeout)."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, not {value!r}")
