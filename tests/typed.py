"""Small typed helpers for tests."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None, what: str = "") -> T:
    """``value``, asserted not None: a lookup (``record(name)``, ``pytorch_row(v)``) the test
    expects to find, narrowed for the type checker."""
    assert value is not None, f"{what} not found" if what else "not found"
    return value
