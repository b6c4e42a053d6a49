"""Typed access to the rows of a knowledge file, with errors that name the file and the row;
reading a knowledge file (bounded, YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from ..errors import KnowledgeError

KNOWLEDGE_ENV = "CONDA_UNSLOTH_KNOWLEDGE"
FILES = ("compat.yaml", "unsloth.yaml", "known_issues.yaml", "evidence.yaml")
SUPPORTED_SCHEMA = 1
MAX_FILE_BYTES = 16 * 1024 * 1024


class _Row:
    """Typed access to one mapping of a knowledge file, with errors that name file and row."""

    def __init__(self, data: Any, file: str, where: str) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, why: str) -> NoReturn:
        raise KnowledgeError(
            f"knowledge file {self.file}: {self.where}: {why}",
            hints=[
                f"fix the row in {self.file}, or unset {KNOWLEDGE_ENV} to use the bundled files",
            ],
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, *, optional: bool = False, default: str = "") -> str:
        if key not in self.data:
            if optional:
                return default
            self.fail(f"missing key '{key}'")
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str):
            if isinstance(value, float):
                self.fail(
                    f"'{key}' is the number {value!r}; write versions as quoted strings "
                    f"(e.g. '{value}') so 12.10 does not become 12.1"
                )
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            self.fail(f"'{key}' must be a string, got {type(value).__name__}")
        if not optional and not value.strip() and key in ("source", "version"):
            self.fail(f"'{key}' is empty")
        return str(value)

    def texts(self, key: str, *, optional: bool = False) -> tuple[str, ...]:
        if key not in self.data:
            if optional:
                return ()
            self.fail(f"missing key '{key}'")
        value = self.data[key]
        if not isinstance(value, list):
            self.fail(f"'{key}' must be a list")
        out = []
        for item in value:
            if isinstance(item, float):
                self.fail(f"'{key}' holds the number {item!r}; quote versions ('{item}')")
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                self.fail(f"'{key}' must hold strings")
            out.append(str(item))
        return tuple(out)

    def ints(self, key: str) -> tuple[int, ...]:
        value = self.data.get(key)
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            self.fail(f"'{key}' must be a list of integers")
        return tuple(value)

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"'{key}' must be an integer")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self.fail(f"'{key}' must be a mapping")
        return value

    def rows(self, key: str) -> list[_Row]:
        value = self.data.get(key)
        if not isinstance(value, list):
            self.fail(f"'{key}' must be a list")
        out = []
        for i, item in enumerate(value):
            label = ""
            if isinstance(item, dict):
                ident = item.get("version") or item.get("id") or item.get("cuda") or ""
                label = f" ({ident})" if ident else ""
            out.append(_Row(item, self.file, f"{self.where}{key}[{i}]{label}"))
        return out

    def source(self) -> str:
        src = self.text("source")
        if not src.strip():
            self.fail("'source' is empty: every row needs a source")
        return src


def read_yaml(directory: str, name: str) -> Any:
    """One knowledge file parsed (YAML), or a KnowledgeError naming it."""
    from ..userfiles import read_text
    from ..yamlload import YamlSyntaxError, load

    path = Path(directory) / name
    if not path.exists():
        raise KnowledgeError(
            f"knowledge file {path} is missing",
            hints=[f"point {KNOWLEDGE_ENV} at a directory holding {', '.join(FILES)}"],
        )
    # bounded, regular files only (a FIFO named compat.yaml must not hang a plan)
    decoded = read_text(path, f"knowledge file {name}", limit=MAX_FILE_BYTES, error=KnowledgeError)
    try:
        return load(decoded)
    except YamlSyntaxError as exc:
        raise KnowledgeError(f"knowledge file {name}: {exc.detail}") from None


def _file(data: Any, name: str) -> _Row:
    row = _Row(data, name, "")
    schema = row.integer("schema_version")
    if schema != SUPPORTED_SCHEMA:
        row.fail(f"schema_version {schema} is not supported (this tool reads {SUPPORTED_SCHEMA})")
    return row
