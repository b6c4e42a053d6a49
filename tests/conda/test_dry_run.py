"""Inside conda, a dry run writes nothing, ever (issue 14 item 2): `solve --lock`, `export -o`,
`verify --sbatch`, `module -o` and `env -o` with `--dry-run` print what they would write and
leave the output folder and the environment as they were. Each command also runs for real
once, to show it does write there (so the dry-run assertion can fail).

Before (55fd3db): inside conda, `--dry-run` came from conda's helper and was ignored by
`solve --lock`, `export -o` and `verify --sbatch`: each printed "wrote ...".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conda import realconda
from tests.conda.conftest import Built

pytestmark = pytest.mark.conda

VERBS = ("solve --lock", "export -o", "verify --sbatch", "module -o", "env -o")


def argv(verb: str, built: Built, out: Path) -> tuple[list[str], Path]:
    """The command for ``verb`` writing into ``out``, and the file it writes."""
    prefix = str(built.prefix)
    chan = (built.demo / "channel").as_uri()
    if verb == "solve --lock":
        f = out / "explicit.txt"
        cmd = ["solve", "-c", chan, "--offline", "--cuda", "12.1", "--lock", str(f)]
    elif verb == "export -o":
        f = out / "conda-lock.yml"
        cmd = ["export", "-p", prefix, "-o", str(f)]
    elif verb == "verify --sbatch":
        f = out / "verify.sbatch"
        cmd = ["verify", "-p", prefix, "--sbatch", str(f)]
    elif verb == "module -o":
        f = out / "unsloth" / "2024.12.12.lua"
        cmd = ["module", "-p", prefix, "--format", "lmod", "-o", str(out)]
    else:
        f = out / "environment.yml"
        cmd = ["env", "--cuda", "12.1", "-o", str(f)]
    return ["unsloth", *cmd], f


def stat_tree(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and folder under ``root``: what a write would change."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("verb", VERBS)
def test_dry_run_writes_nothing(built: Built, tmp_path: Path, verb: str, as_json: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cmd, target = argv(verb, built, out)
    env_before = stat_tree(built.prefix)
    extra = ["--json"] if as_json else []
    r = realconda.conda(built.sandbox, *cmd, "--dry-run", *extra, cwd=tmp_path)
    assert r.code == 0, r
    assert list(out.iterdir()) == [], r
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_conda", "out"], r
    assert stat_tree(built.prefix) == env_before
    if as_json:
        doc = json.loads(r.out)
        if verb == "env -o":
            assert doc["files"] == [], doc
        flags = {k: v for k, v in _walk(doc) if k in ("written", "dry_run")}
        assert (flags or verb == "env -o") and all(
            (v is False if k == "written" else v is True) for k, v in flags.items()
        ), doc
    elif verb in ("env -o", "module -o"):  # these print the file they would write
        assert "wrote" not in r.out, r
    else:
        assert "would write" in r.out and "wrote" not in r.out, r

    real = realconda.conda(built.sandbox, *cmd, *extra, cwd=tmp_path)
    assert real.code == 0, real
    assert target.is_file(), real


def _walk(doc: object) -> list[tuple[str, object]]:
    """Every (key, value) in a JSON document, nested ones too."""
    found: list[tuple[str, object]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            found.append((k, v))
            found.extend(_walk(v))
    elif isinstance(doc, list):
        for v in doc:
            found.extend(_walk(v))
    return found
