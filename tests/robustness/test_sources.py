"""A create's source: -f, --from-lock or --from-bundle. A name given empty (`--from-lock
"$LOCK"` with LOCK unset) is refused, never read as "not given" (which planned and solved
against the public channels instead), and a planning flag the source would silently ignore is
refused naming it (before, `--from-bundle B --cuda 11.8` built B's CUDA 12.1 env and recorded
cuda 11.8 as the request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.helpers import assert_refused, run_cli, snapshot

CASES = [
    (["--from-bundle", ""], "--from-bundle is empty"),
    (["--from-lock", ""], "--from-lock is empty"),
    (["-f", ""], "-f is empty"),
    (["--from-lock", " "], "--from-lock is empty"),
    (["--from-bundle", "b.tar", "--cuda", "11.8"], "--cuda do not apply with --from-bundle"),
    (["--from-lock", "lock.txt", "--python", "3.12"], "--python do not apply with --from-lock"),
    (["--from-lock", "lock.txt", "-c", "conda-forge"], "-c do not apply with --from-lock"),
    (
        ["--from-lock", "lock.txt", "--profile", "conda-forge", "--gpu-arch", "9.0"],
        "--profile, --gpu-arch do not apply with --from-lock",
    ),
    (["--from-lock", "lock.txt", "--solver", "rattler"], "--solver do not apply with --from-lock"),
    (["-f", "env.yml", "--torch", "2.4.1"], "--torch do not apply with -f: the file pins them"),
    (["-f", "env.yml", "--python", "3.10", "--unsloth", "2024.12.12"], "--python, --unsloth"),
    (["-f", "env.yml", "--from-lock", "lock.txt"], "not both -f and --from-lock"),
]


@pytest.mark.parametrize(
    ("args", "says"), CASES, ids=[" ".join(a).replace("/", "_") or "empty" for a, _ in CASES]
)
def test_a_source_it_would_ignore_or_an_empty_one_is_refused(
    tmp_path: Path, args: list[str], says: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "lock.txt").write_text("@EXPLICIT\n")
    (work / "env.yml").write_text("dependencies: [python=3.11]\n")
    (work / "b.tar").write_bytes(b"")
    before = snapshot(work)
    argv = ["create", "-p", str(work / "env"), "--yes", "--offline", *args]
    r = run_cli([a if not a.endswith((".txt", ".yml", ".tar")) else str(work / a) for a in argv],
                tmp_path)  # fmt: skip
    assert_refused(r, says)
    assert snapshot(work) == before  # nothing written, no env begun
