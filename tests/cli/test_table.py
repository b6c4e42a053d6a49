"""Tables written into a log or a pipe: the plain path (no rich import) writes exactly what
rich writes there, and leaves to rich every table it cannot lay out the same way."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conda_unsloth.cli import _shared

HEADERS = ("name", "version", "build", "why")


def by_rich(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    out = io.StringIO()
    _shared.rich_table(rows, headers, out)
    return out.getvalue()


def by_table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> tuple[str, bool]:
    """What ``table`` writes, and whether its plain path wrote it."""
    out = io.StringIO()
    plain = _shared._plain_table(rows, headers, out, "why")
    if not plain:
        _shared.table(rows, headers, out)
    return out.getvalue(), plain


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(var, raising=False)


def test_a_solve_table_is_written_plain_as_rich_writes_it() -> None:
    rows = [
        ("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0", "pytorch"),
        ("unsloth", "2024.12.12", "", "pypi (pip)"),
        ("typing_extensions", "4.12.2", "pyha770c72_0", "conda-forge"),
    ]
    headers = ("name", "version", "build", "channel")
    text, plain = by_table(rows, headers)
    assert plain
    assert text == by_rich(rows, headers)
    assert (
        text.splitlines()[0]
        == "name               version     build                         channel    "
    )


cell = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
wide = st.text(max_size=12)  # any text: control characters, wide characters, spaces at ends


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(cell, cell, wide, cell), max_size=6),
    columns=st.sampled_from([None, 40, 80, 200]),
)
def test_table_is_rich_s_text_whatever_the_cells(
    rows: list[tuple[str, ...]], columns: int | None
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        if columns is not None:
            mp.setenv("COLUMNS", str(columns))
        text, _ = by_table(rows, HEADERS)
        assert text == by_rich(rows, HEADERS)


def test_rich_lays_out_what_needs_it() -> None:
    folded = [("pytorch", "2.5.1", "b", "x " * 200)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "80")
        assert by_table(folded, HEADERS)[1] is False  # too wide: rich folds the why column
    assert by_table([("tab\there", "1", "b", "")], HEADERS)[1] is False
    assert by_table([("名前", "1", "b", "")], HEADERS)[1] is False  # two columns a character
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORCE_COLOR", "1")  # rich writes colour codes (the bold header)
        assert by_table([("a", "1", "b", "")], HEADERS)[1] is False


def test_a_solve_into_a_pipe_does_not_import_rich() -> None:
    code = (
        "import sys; from conda_unsloth.cli import _shared; "
        "_shared.table([('a', '1')], ('name', 'version')); "
        "print('rich' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["name  version", "a     1      ", "False"]
