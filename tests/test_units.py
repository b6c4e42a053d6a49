"""Sizes as people read them: the plan's download column, bundle summaries, full-disk lines."""

from __future__ import annotations

import pytest

from conda_unsloth.units import human_size


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (523, "523 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (11_900_000, "11.3 MB"),
        (1024**3, "1.0 GB"),
        (5 * 1024**4, "5120.0 GB"),  # no TB: GB is the last unit
    ],
)
def test_human_size(n: int, shown: str) -> None:
    assert human_size(n) == shown
