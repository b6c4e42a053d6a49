"""Sizes as people read them (plan tables, bundle summaries, full-disk messages)."""

from __future__ import annotations


def human_size(n: int) -> str:
    """``n`` bytes as B (whole), KB, MB or GB (one decimal), 1024 to the step."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
