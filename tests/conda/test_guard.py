"""The post-command guard: silent for prefixes we did not build, warns with the fix for ours."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conda_unsloth import marker
from conda_unsloth.conda import guard
from tests import prefixes as P


def test_not_our_prefix_is_silent(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    assert guard.check_prefix(prefix, "install") == []


def test_our_healthy_prefix_is_silent(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    marker.write(prefix, {"status": "ok"})
    assert guard.check_prefix(prefix, "install") == []


def test_our_prefix_broken_by_a_conda_command_warns_with_the_fix(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    marker.write(prefix, {"status": "ok"})
    lines = guard.check_prefix(prefix, "install")
    assert lines[0].startswith(f"conda-unsloth warning: `conda install` left {prefix} with F1:")
    assert any(ln.startswith("  fix: ") for ln in lines)


def test_both_env_create_spellings_are_guarded() -> None:
    assert {"env_create", "create", "env_update", "install", "remove"} <= guard.RUN_FOR


@pytest.mark.conda
def test_hooks_with_real_conda() -> None:
    from conda_unsloth import plugin

    assert [c.name for c in plugin.conda_health_checks()] == ["unsloth"]
    assert [c.name for c in plugin.conda_post_commands()] == ["unsloth-guard"]


def test_fifo_metadata_in_our_prefix_returns_promptly(tmp_path: Path) -> None:
    """conda does not wrap post-command hooks: a FIFO where a METADATA should be must neither
    hang nor raise (no timing assertion: call_or_unhang only turns a hang into a failure)."""
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    marker.write(prefix, {"status": "ok"})
    sp = prefix / "lib" / "python3.11" / "site-packages"
    fifos = [
        P.make_fifo(sp / "xformers-0.0.27.dist-info" / "METADATA"),
        P.make_fifo(sp / "xformers-0.0.27.dist-info" / "INSTALLER"),
    ]
    lines = P.call_or_unhang(lambda: guard.check_prefix(prefix, "install"), fifos)
    # the folder name still says xformers 0.0.27: F1 is found
    assert lines[0].startswith(f"conda-unsloth warning: `conda install` left {prefix} with F1:")


def test_fifo_record_in_our_prefix_is_one_warning_line(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    marker.write(prefix, {"status": "ok"})
    fifo = P.make_fifo(prefix / "conda-meta" / "bad-1.0-0.json")
    lines = P.call_or_unhang(lambda: guard.check_prefix(prefix, "install"), [fifo])
    assert lines == [
        f"conda-unsloth: could not check {prefix} after `conda install`: conda record {fifo} "
        f"is corrupt (not a regular file); cannot tell what is installed in {prefix}"
    ]


@pytest.mark.parametrize(
    "damage",
    ["record-wrong-type", "marker-is-a-fifo", "prefix-gone", "conda-meta-unreadable"],
)
def test_check_prefix_never_raises(tmp_path: Path, damage: str) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    marker.write(prefix, {"status": "ok"})
    fifos: list[Path] = []
    if damage == "record-wrong-type":
        rec = prefix / "conda-meta" / P.MKL_2023.record_name
        rec.write_text('{"name": "mkl", "version": "2023.0.0", "build": "0", "files": 5}')
    elif damage == "marker-is-a-fifo":
        fifos.append(P.make_fifo(marker.path_for(prefix)))
    elif damage == "prefix-gone":
        prefix = tmp_path / "missing"
    else:
        (prefix / "conda-meta").chmod(0o000)
    try:
        lines = P.call_or_unhang(lambda: guard.check_prefix(prefix, "remove"), fifos)
    finally:
        (tmp_path / "env" / "conda-meta").chmod(0o755)
    if damage == "record-wrong-type":
        assert len(lines) == 1 and lines[0].startswith(f"conda-unsloth: could not check {prefix}")
        assert "('files' is a number, not a list)" in lines[0]
    else:  # a marker we cannot stat (or that is no file) is not ours; root reads it: healthy
        assert lines == []


def test_post_command_without_conda_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("conda") is not None:
        pytest.skip("conda is installed here: its context decides the prefix")
    guard.post_command("install")
    assert capsys.readouterr() == ("", "")
