"""Parse YAML we read from users and from our own data files, with one answer for every way a
parse can fail: ruamel raises YAMLError for most bad input, but ValueError, IndexError,
TypeError or RecursionError for some (found by the hypothesis tests: ``._``, ``+_``)."""

from __future__ import annotations

from typing import Any


class YamlSyntaxError(Exception):
    """``detail`` reads "YAML syntax error at line N: problem", ready for a one-line message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def load(text: str, *, typ: str = "safe") -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ=typ, pure=True).load(text)
    except (YAMLError, ValueError, IndexError, TypeError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = (
            getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        )
        raise YamlSyntaxError(f"YAML syntax error{where}: {problem}") from None
