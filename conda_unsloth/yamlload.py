"""Parse YAML we read from users and from our own data files, with one answer for every way a
parse can fail: ruamel raises YAMLError for most bad input, but ValueError, IndexError,
TypeError or RecursionError for some (found by the hypothesis tests: ``._``, ``+_``).

Aliases are bounded. A YAML alias (``*a``) makes a node appear again wherever it is named, so
a few hundred bytes can describe a document of a billion values (the "billion laughs" bomb):
ruamel shares the node instead of copying it, but anything that walks the result (``str()`` of a
value, a loop over a list) pays for every repetition. While composing, every alias adds the
expanded size of the node it names; when aliases add more than :data:`MAX_ALIAS_NODES` values
(or an alias names a node that contains itself) the file is refused before it is constructed.
Files without aliases are unaffected, and files that use a few anchors to avoid repetition
(conda-lock's PyYAML writer may) stay far below the cap.
"""

from __future__ import annotations

from typing import Any

MAX_ALIAS_NODES = 100_000


class YamlSyntaxError(Exception):
    """``detail`` reads "YAML syntax error at line N: problem" (or "YAML aliases at line N ...
    refusing it"), ready for a one-line message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _AliasBomb(Exception):
    def __init__(self, detail: str, line: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line


def _bounded_composer(base: type[Any], limit: int) -> type[Any]:
    """``base`` (ruamel's Composer) counting the values aliases add; see the module docstring."""
    from ruamel.yaml.events import AliasEvent

    class Bounded(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.warn_double_anchors = False  # legal YAML; not worth a warning on stderr
            self._sizes: dict[int, int] = {}
            self._added = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            alias = self.parser.check_event(AliasEvent)
            mark = self.parser.peek_event().start_mark if alias else None
            node = super().compose_node(parent, index)
            if alias:
                size = self._sizes.get(id(node))
                line = mark.line + 1 if mark is not None else None
                if size is None:
                    raise _AliasBomb("an alias names a node that contains it", line)
                self._added += size
                if self._added > limit:
                    raise _AliasBomb(f"aliases expand to more than {limit} values", line)
                return node
            value = node.value
            if isinstance(value, list):
                size = 1
                for item in value:
                    for child in item if isinstance(item, tuple) else (item,):
                        size += self._sizes.get(id(child), 1)
            else:
                size = 1
            self._sizes[id(node)] = size
            return node

    return Bounded


def load(text: str, *, typ: str = "safe", max_alias_nodes: int = MAX_ALIAS_NODES) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    y = YAML(typ=typ, pure=True)
    y.Composer = _bounded_composer(y.Composer, max_alias_nodes)
    try:
        return y.load(text)
    except _AliasBomb as exc:
        where = f" at line {exc.line}" if exc.line is not None else ""
        raise YamlSyntaxError(f"YAML aliases{where}: {exc.detail}; refusing it") from None
    except (YAMLError, ValueError, IndexError, TypeError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = (
            getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        )
        raise YamlSyntaxError(f"YAML syntax error{where}: {problem}") from None
