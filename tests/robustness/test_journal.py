"""Issue 16 #1 and #2: recovery proves a directory is the one the killed create made before it
removes anything, touches no path but the prefix and its own siblings, and a failed create
leaves no directory behind that it made. Plus the sweep of temp dirs killed creates left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conda_unsloth import prefix as prefixmod
from conda_unsloth import prefixtx, tempdirs
from conda_unsloth.errors import PrefixError
from tests import prefixes as P
from tests.robustness.helpers import assert_refused, run_cli, snapshot

said: list[str] = []


def say(msg: str) -> None:
    said.append(msg)


def make_env(path: Path, marker: str) -> Path:
    (path / "conda-meta").mkdir(parents=True)
    (path / "conda-meta" / "history").write_text(marker)
    return path


def ident(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_dev, st.st_ino]


# a create that dies with SIGKILL in the middle of its build, as a child process
KILLED_CREATE = """
import os, signal, sys
from pathlib import Path
from conda_unsloth import prefixtx, tempdirs
prefix = Path(sys.argv[1])
replacing = sys.argv[2] == "force"
with prefixtx.prefix_lock(prefix), prefixtx.transaction(
    prefix, replacing, False, lambda e: None, print
):
    (prefix / "conda-meta").mkdir()
    (prefix / "half-built").write_text("x")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_create(prefix: Path, force: bool = False) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CREATE, str(prefix), "force" if force else "new"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert prefixmod.journal_path(prefix).exists()


def journal_doc(prefix: Path) -> dict[str, object]:
    doc = json.loads(prefixmod.journal_path(prefix).read_text())
    assert isinstance(doc, dict)
    return doc


# ----------------------------------------------------------------------------- #1 proof


def test_the_killed_create_own_half_env_is_removed(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    killed_create(prefix)
    assert prefixtx.token_path(prefix).exists()
    prefixtx.recover(prefix, say)
    assert os.listdir(tmp_path) == []


def test_inode_reuse_never_deletes_the_users_new_directory(tmp_path: Path) -> None:
    """The user removes the half env a SIGKILLed create left and makes a directory at that
    path; the file system hands it the freed inode number (forced here by writing the new
    identity into the journal, as ext4 does by itself). Recovery must see it is not ours."""
    prefix = tmp_path / "env"
    killed_create(prefix)
    old = ident(prefix)
    subprocess.run(["rm", "-rf", str(prefix)], check=True)  # the user's clean-up
    make_env(prefix, "precious")
    (prefix / "data.bin").write_bytes(b"\x00user data")
    doc = journal_doc(prefix)
    assert doc["prefix_id"] == old
    doc["prefix_id"] = ident(prefix)  # the inode number came back
    prefixmod.journal_path(prefix).write_text(json.dumps(doc))
    before = snapshot(prefix)
    said.clear()
    prefixtx.recover(prefix, say)
    assert snapshot(prefix) == before
    assert any("not provably the directory" in m for m in said), said
    assert not prefixmod.pending(prefix)  # nothing left to finish: the journal is gone


def test_inode_reuse_then_create_refuses_and_keeps_the_directory_cli(tmp_path: Path) -> None:
    w = tmp_path / "w"
    prefix = w / "env"
    w.mkdir()
    killed_create(prefix)
    subprocess.run(["rm", "-rf", str(prefix)], check=True)
    make_env(prefix, "precious")
    doc = journal_doc(prefix)
    doc["prefix_id"] = ident(prefix)
    prefixmod.journal_path(prefix).write_text(json.dumps(doc))
    before = snapshot(prefix)
    r = run_cli(
        ["create", "-p", str(prefix), "--yes", "--cuda", "12.1", "-c", str(w / "nochan")],
        tmp_path / "sys",
        cwd=w,
    )
    assert_refused(r, "already exists")
    assert "not provably the directory" in r.err
    assert snapshot(prefix) == before


def test_a_token_file_that_is_a_link_proves_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    killed_create(prefix)
    token = prefixtx.token_path(prefix)
    elsewhere = tmp_path / "token-copy"
    elsewhere.write_text(token.read_text())
    subprocess.run(["rm", "-rf", str(prefix)], check=True)
    make_env(prefix, "precious")
    prefixtx.token_path(prefix).symlink_to(elsewhere)
    doc = journal_doc(prefix)
    doc["prefix_id"] = ident(prefix)
    prefixmod.journal_path(prefix).write_text(json.dumps(doc))
    before = snapshot(prefix)
    prefixtx.recover(prefix, say)
    assert snapshot(prefix) == before


def test_a_journal_from_before_tokens_removes_nothing(tmp_path: Path) -> None:
    """A journal without a token (an older conda-unsloth) cannot prove anything."""
    prefix = make_env(tmp_path / "env", "half")
    prefixmod.journal_path(prefix).write_text(
        json.dumps({"pid": 1, "backup": None, "prefix_id": ident(prefix)})
    )
    before = snapshot(prefix)
    prefixtx.recover(prefix, say)
    assert snapshot(prefix) == before


def test_killed_force_create_restores_the_old_env(tmp_path: Path) -> None:
    prefix = make_env(tmp_path / "env", "old")
    before = snapshot(prefix)
    killed_create(prefix, force=True)
    prefixtx.recover(prefix, say)
    assert snapshot(prefix) == before
    assert os.listdir(tmp_path) == ["env"]


@pytest.mark.parametrize(
    "token_written",
    [None, "", "0123", "0123456789abcdef0123456789abcdef"],
    ids=["before-token", "token-file-empty", "token-cut-short", "after-token"],
)
def test_killed_between_mkdir_and_journal_restores_the_old_env(
    tmp_path: Path, token_written: str | None
) -> None:
    """SIGKILL after the old env was moved aside and the new prefix made, before the journal
    recorded the new prefix (transaction's first steps, as they leave the disk): the new
    prefix, empty or holding only the token file (written, or cut short), gives way and the old
    env is put back (it was left aside when loaded machines' test runs hit these moments:
    "move it yourself" before the token, "not provably" while it was being written)."""
    prefix = make_env(tmp_path / "env", "old")
    before = snapshot(prefix)
    token = "0123456789abcdef0123456789abcdef"
    backup = prefixmod.backup_path(prefix)
    prefixtx._write_journal(
        prefix,
        {"version": prefixtx.JOURNAL_VERSION, "pid": os.getpid(), "backup": str(backup),
         "token": token, "prefix_id": None},
    )  # fmt: skip
    os.replace(prefix, backup)
    prefix.mkdir()
    if token_written is not None:  # the token file is created, then filled
        prefixtx.token_path(prefix).write_text(token_written)
    said.clear()
    prefixtx.recover(prefix, say)
    assert snapshot(prefix) == before
    assert os.listdir(tmp_path) == ["env"]
    assert any("an earlier --force create was killed" in m for m in said), said


@pytest.mark.parametrize("token_written", [None, "", "0123"], ids=["before", "empty", "cut-short"])
def test_a_new_create_killed_before_its_token_leaves_an_empty_directory(
    tmp_path: Path, token_written: str | None
) -> None:
    """The same instant in a create without --force: the directory cannot be proven ours, so
    it stays, empty (never with our half-written token file in it), recovery says so, and a
    create with --force may use it."""
    prefix = tmp_path / "env"
    prefixtx._write_journal(
        prefix,
        {"version": prefixtx.JOURNAL_VERSION, "pid": os.getpid(), "backup": None,
         "token": "0123456789abcdef0123456789abcdef", "prefix_id": None},
    )  # fmt: skip
    prefix.mkdir()
    if token_written is not None:
        prefixtx.token_path(prefix).write_text(token_written)
    said.clear()
    prefixtx.recover(prefix, say)
    assert sorted(os.listdir(tmp_path)) == ["env"] and os.listdir(prefix) == []
    assert said == [
        f"{prefix} is an empty directory an earlier, killed create may have made; left as is "
        "(remove it if it is not yours)"
    ]
    assert prefixmod.check_target(prefix, force=True) is True


# ----------------------------------------------------------------------------- #1 only our paths


@pytest.mark.parametrize(
    "backup",
    [
        "{tmp}/other",  # an unrelated env beside it
        "{tmp}/sub/.env.conda-unsloth-backup-1",  # the right name in another directory
        "{tmp}/.env.conda-unsloth-backup-1/../other",  # a way out of the name
        "{tmp}/.env.conda-unsloth-backup-x",  # not a pid
        "{tmp}/.env.conda-unsloth-trash-1",  # another kind of sibling
        "/",
    ],
    ids=["other-env", "other-dir", "dotdot", "not-a-pid", "trash", "root"],
)
def test_a_journal_naming_a_foreign_backup_is_refused_cli(tmp_path: Path, backup: str) -> None:
    w = tmp_path / "w"
    w.mkdir()
    make_env(w / "other", "someone else's env")
    (w / "sub").mkdir()
    prefix = w / "env"
    prefixmod.journal_path(prefix).write_text(
        json.dumps(
            {
                "version": 2,
                "pid": 1,
                "backup": backup.format(tmp=w),
                "token": "0" * 32,
                "prefix_id": None,
            }
        )
    )
    before = snapshot(w)
    r = run_cli(
        ["create", "-p", str(prefix), "--yes", "--cuda", "12.1", "-c", str(w / "nochan")],
        tmp_path / "sys",
        cwd=w,
    )
    assert_refused(r, "as the old env's backup, which is not")
    assert snapshot(w) == before


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"backup": 7}',
        '{"backup": null, "prefix_id": "x"}',
        '{"backup": null, "prefix_id": [1, true]}',
        '{"backup": null, "token": "../../etc"}',
        "[" * 100_000,
    ],
    ids=["garbage", "list", "backup-int", "id-str", "id-bool", "token-path", "deep"],
)
def test_a_malformed_journal_is_refused_and_nothing_touched(tmp_path: Path, content: str) -> None:
    prefix = make_env(tmp_path / "env", "half")
    prefixmod.journal_path(prefix).write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(PrefixError, match="refusing it") as info:
        prefixtx.recover(prefix, say)
    assert "\n" not in info.value.message
    assert snapshot(tmp_path) == before


def test_a_journal_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    journal = prefixmod.journal_path(prefix)
    os.mkfifo(journal)
    with pytest.raises(PrefixError, match="FIFO"):
        P.call_or_unhang(lambda: prefixtx.recover(prefix, say), [journal], grace=10)


def test_trash_is_matched_literally(tmp_path: Path) -> None:
    """A prefix name with glob characters: only its own trash is garbage."""
    prefix = tmp_path / "env[1]"
    mine = prefixmod.trash_path(prefix)
    make_env(mine, "trash")
    other = tmp_path / ".env1.conda-unsloth-trash-5"  # what the unescaped glob matched
    make_env(other, "not ours")
    prefixtx.recover(prefix, say)
    assert not mine.exists() and other.exists()


# ----------------------------------------------------------------------------- #2 no trace


def test_a_failed_create_removes_the_parents_the_lock_made(tmp_path: Path) -> None:
    prefix = tmp_path / "new" / "deeper" / "env"
    with (
        pytest.raises(RuntimeError),
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, False, False, lambda e: None, say),
    ):
        raise RuntimeError("the build failed")
    assert os.listdir(tmp_path) == []


def test_a_successful_create_keeps_its_parents(tmp_path: Path) -> None:
    prefix = tmp_path / "new" / "env"
    with (
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, False, False, lambda e: None, say),
    ):
        (prefix / "conda-meta").mkdir()
    assert os.listdir(tmp_path / "new") == ["env"]
    assert os.listdir(prefix) == ["conda-meta"]  # the token is gone with the journal


def test_parents_someone_else_filled_meanwhile_are_kept(tmp_path: Path) -> None:
    prefix = tmp_path / "new" / "env"
    with prefixtx.prefix_lock(prefix):
        (tmp_path / "new" / "theirs.txt").write_text("x")
    assert os.listdir(tmp_path / "new") == ["theirs.txt"]


def test_dotdot_prefix_creates_nothing_cli(tmp_path: Path) -> None:
    w = tmp_path / "w"
    w.mkdir()
    r = run_cli(
        ["create", "-p", "missing/..", "--yes", "--cuda", "12.1", "-c", str(w / "nochan")],
        tmp_path / "sys",
        cwd=w,
    )
    assert_refused(r, "names no directory of its own")
    assert os.listdir(w) == []


# ----------------------------------------------------------------------------- temp dirs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_our_dead_temp_dirs(tmp_path: Path) -> None:
    tag = tempdirs.tempdir_prefix("pip").split("-")[-2]  # this host's tag
    dead = _dead_pid()
    stale = tmp_path / f"conda-unsloth-pip-{dead}-{tag}-abc123"
    stale_verify = tmp_path / f"conda-unsloth-verify-{dead}-{tag}-x_9"
    live = tmp_path / f"conda-unsloth-pip-{os.getpid()}-{tag}-abc123"
    other_host = tmp_path / f"conda-unsloth-pip-{dead}-00000000-abc123"
    old_style = tmp_path / "conda-unsloth-pip-abc123"  # no pid: cannot know whose
    not_ours = tmp_path / f"other-pip-{dead}-{tag}-abc123"
    for d in (stale, stale_verify, live, other_host, old_style, not_ours):
        (d / "sub").mkdir(parents=True)
    a_file = tmp_path / f"conda-unsloth-pip-{dead}-{tag}-file"
    a_file.write_text("x")
    a_link = tmp_path / f"conda-unsloth-pip-{dead}-{tag}-link"
    a_link.symlink_to(live)
    removed = tempdirs.sweep_stale_tempdirs(tmp_path)
    assert sorted(removed) == sorted([stale, stale_verify])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other_host, old_style, not_ours, a_file, a_link)
    )
    assert (live / "sub").is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_sweep_keeps_another_users_dir(tmp_path: Path) -> None:
    tag = tempdirs.tempdir_prefix("verify").split("-")[-2]
    theirs = tmp_path / f"conda-unsloth-verify-{_dead_pid()}-{tag}-abc"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    assert tempdirs.sweep_stale_tempdirs(tmp_path) == []
    assert theirs.is_dir()


def test_tempdir_prefix_names_a_dir_the_sweep_recognises(tmp_path: Path) -> None:
    code = (
        "import sys, tempfile; from conda_unsloth import tempdirs\n"
        "print(tempfile.mkdtemp(prefix=tempdirs.tempdir_prefix('pip'), dir=sys.argv[1]))\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(made).is_dir()
    assert tempdirs.sweep_stale_tempdirs(tmp_path) == [Path(made)]  # its pid has exited
    live = tempfile.mkdtemp(prefix=tempdirs.tempdir_prefix("verify"), dir=tmp_path)
    assert tempdirs.sweep_stale_tempdirs(tmp_path) == [] and Path(live).is_dir()
