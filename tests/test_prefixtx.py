"""The prefix protocol: lock, journal, transaction, recovery — each crash state on disk, and the
prefixes that must never be touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import install, inventory, prefixtx, signals
from conda_unsloth import prefix as prefixmod
from conda_unsloth.errors import InstallError, PrefixError
from tests import envbuild
from tests.conftest import Result, tree

said: list[str] = []


def say(msg: str) -> None:
    said.append(msg)


def make_env(path: Path, marker: str = "x") -> Path:
    (path / "conda-meta").mkdir(parents=True)
    (path / "conda-meta" / "history").write_text(marker)
    (path / "lib").mkdir()
    (path / "lib" / "data.txt").write_text(marker)
    return path


TOKEN = "0123456789abcdef" * 2


def journal(
    prefix: Path,
    backup: Path | None,
    ident: list[int] | None,
    token: str | None = TOKEN,
    plant: bool = True,
) -> None:
    """The journal a killed create leaves; ``plant``: the create also wrote its token into the
    prefix (a directory someone else made at that path has none)."""
    prefixmod.journal_path(prefix).write_text(
        json.dumps(
            {
                "version": 2,
                "pid": 1,
                "backup": str(backup) if backup else None,
                "token": token,
                "prefix_id": ident,
            }
        )
    )
    if plant and token and prefix.is_dir():
        prefixtx.token_path(prefix).write_text(token)


def ident(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_dev, st.st_ino]


# ----------------------------------------------------------------------------- recover


def test_killed_during_commit_keeps_the_new_env(tmp_path: Path) -> None:
    """Killed after the backup went to the trash, before the journal was removed."""
    new = make_env(tmp_path / "env", "new")
    trash = prefixmod.trash_path(new)
    make_env(trash, "old")
    before = tree(new)
    journal(new, prefixmod.backup_path(new), ident(new))  # the backup path no longer exists
    prefixtx.recover(new, say)
    assert tree(new) == before, "the verified new env is kept (without the token)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]


def test_killed_mid_build_removes_ours_and_restores_the_backup(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    backup = prefixmod.backup_path(prefix)
    make_env(backup, "old")
    old = tree(backup)
    prefix.mkdir()
    (prefix / "half").write_text("half-built")
    journal(prefix, backup, ident(prefix))
    prefixtx.recover(prefix, say)
    assert tree(prefix) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]


def test_a_stale_journal_never_deletes_someone_elses_directory(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    prefix.mkdir()
    stale = ident(prefix)
    prefix.rename(tmp_path / "gone")  # keeps that inode in use, so the new one differs
    make_env(prefix, "precious")  # a new directory at the same path
    journal(prefix, None, stale, plant=False)
    before = tree(prefix)
    prefixtx.recover(prefix, say)
    assert tree(prefix) == before
    assert (tmp_path / "gone").is_dir()


def test_killed_before_the_old_env_moved_keeps_it(tmp_path: Path) -> None:
    prefix = make_env(tmp_path / "env", "old")
    journal(prefix, prefixmod.backup_path(prefix), None, plant=False)
    before = tree(prefix)
    prefixtx.recover(prefix, say)
    assert tree(prefix) == before and not prefixmod.journal_path(prefix).exists()


def test_dry_run_with_a_pending_journal_changes_nothing(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    prefix.mkdir()
    (prefix / "half").write_text("x")
    journal(prefix, None, ident(prefix))
    before = tree(tmp_path)
    r = cli(
        "create", "-p", str(prefix), "--dry-run", "--cuda", "12.1", "-c", str(tmp_path / "nochan")
    )
    assert "a real run will finish its clean-up" in r.err
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- transaction


def test_a_prefix_that_appears_while_planning_is_not_touched(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert prefixmod.check_target(prefix, force=False) is False
    make_env(prefix, "someone else's")  # another create built it meanwhile
    before = tree(prefix)
    with (
        pytest.raises(PrefixError, match="appeared while this create was planning"),
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, False, False, lambda e: None, say),
    ):
        pass
    assert tree(prefix) == before


def test_rollback_restores_the_old_env_and_commit_leaves_nothing_beside_it(tmp_path: Path) -> None:
    prefix = make_env(tmp_path / "env", "old")
    before = tree(prefix)
    with (
        pytest.raises(RuntimeError),
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, True, False, lambda e: None, say),
    ):
        (prefix / "new-file").write_text("new")
        raise RuntimeError("build failed")
    assert tree(prefix) == before
    with (
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, True, False, lambda e: None, say),
    ):
        make_env(prefix / "x", "new")  # the build
    assert not (prefix / "lib").exists() and (prefix / "x").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]


def test_keep_failed_with_force_keeps_both(tmp_path: Path) -> None:
    prefix = make_env(tmp_path / "env", "old")
    before = tree(prefix)
    with (
        pytest.raises(RuntimeError),
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, True, True, lambda e: None, say),
    ):
        (prefix / "conda-meta").mkdir()
        raise RuntimeError("build failed")
    assert tree(prefix) == before
    kept = [p.name for p in tmp_path.iterdir() if p.name.startswith("env.failed-")]
    assert len(kept) == 1


def test_a_signal_during_a_critical_step_is_raised_after_it(tmp_path: Path) -> None:
    done = []
    with pytest.raises(signals.Interrupted) as exc, signals.signals_raise():
        with signals.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the step ran to its end")
        done.append("not reached")
    assert exc.value.signum == signal.SIGTERM and done == ["the step ran to its end"]


def test_second_lock_is_refused(tmp_path: Path) -> None:
    with (
        prefixtx.prefix_lock(tmp_path / "env"),
        pytest.raises(PrefixError, match="another conda unsloth create"),
        prefixtx.prefix_lock(tmp_path / "env"),
    ):
        pass


def test_long_names_fit_the_side_files(tmp_path: Path) -> None:
    prefix = tmp_path / ("e" * 240)
    with (
        prefixtx.prefix_lock(prefix),
        prefixtx.transaction(prefix, False, False, lambda e: None, say),
    ):
        (prefix / "conda-meta").mkdir()
    assert prefix.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == [prefix.name]


# ----------------------------------------------------------------------------- never touched


@pytest.mark.parametrize(
    "layout",
    ["conda-root", "holds-envs", "nested", "symlink", "running-python"],
)
def test_prefixes_that_are_never_built_over(
    cli: Callable[..., Result], tmp_path: Path, layout: str
) -> None:
    if layout == "conda-root":
        prefix = make_env(tmp_path / "base")
        (prefix / "condabin").mkdir()
    elif layout == "holds-envs":
        prefix = make_env(tmp_path / "base")
        make_env(prefix / "envs" / "other")
    elif layout == "nested":
        prefix = make_env(tmp_path / "outer") / "inner"
    elif layout == "symlink":
        make_env(tmp_path / "real")
        prefix = tmp_path / "link"
        prefix.symlink_to(tmp_path / "real")
    else:
        prefix = Path(sys.prefix)
    before = tree(tmp_path)
    r = cli(
        "create",
        "-p",
        str(prefix),
        "--force",
        "--yes",
        "--cuda",
        "12.1",
        "-c",
        str(tmp_path / "c"),
    )
    assert r.code == 2 and "Traceback" not in r.err, r.err
    assert tree(tmp_path) == before


def test_a_name_found_in_a_later_envs_dir_is_that_env(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "ed1", tmp_path / "ed2"
    first.mkdir()
    make_env(second / "foo")
    monkeypatch.setenv("CONDA_ENVS_PATH", f"{first}{os.pathsep}{second}")
    r = cli("create", "-n", "foo", "--yes", "--cuda", "12.1", "-c", str(tmp_path / "c"))
    assert r.code == 2 and f"{second / 'foo'} already exists" in r.err
    assert list(first.iterdir()) == []


# ----------------------------------------------------------------------------- pip vs conda


def test_pip_may_not_replace_condas_torch(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requirement that pins a local-version torch wheel: `torch==2.5.1` admits
    `2.5.1+cu121`, so the constraint alone would let pip replace conda's torch."""
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    prefix = tmp_path / "env"
    from conda_unsloth.__main__ import main

    assert main(envbuild.create_args(demo, prefix, "-q")) == 0
    wheels = tmp_path / "evil"
    wheels.mkdir()
    envbuild.wheel(wheels, "evil", "1.0", ["torch==2.5.1+cu121"])
    envbuild.wheel(wheels, "torch", "2.5.1+cu121", [])
    opts = install.PipOptions(find_links=(str(wheels),), offline=True)
    before = tree(prefix)
    with pytest.raises(
        InstallError, match=r"pip would replace conda's torch 2\.5\.1 with torch 2\.5\.1\+cu121"
    ):
        install.pip_stage(prefix, ["evil==1.0"], ["torch==2.5.1"], opts)
    assert tree(prefix) == before
    assert inventory.torch_dists(prefix) == ["torch-2.5.1.dist-info (conda)"]


@pytest.mark.parametrize("verb", ["doctor", "verify", "export", "module"])
def test_read_verbs_refuse_a_half_built_env(
    cli: Callable[..., Result], tmp_path: Path, verb: str
) -> None:
    """After a SIGKILLed create (its journal is still there), no verb reads the env as if whole."""
    prefix = make_env(tmp_path / "env")
    journal(prefix, None, ident(prefix))
    before = tree(tmp_path)
    r = cli(verb, "-p", str(prefix))
    assert r.code == 2 and "was killed before it finished" in r.err and "Traceback" not in r.err
    assert tree(tmp_path) == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hold_lock(prefix: Path, pid_in_file: int, seconds: float) -> subprocess.Popen[str]:
    """A process holding ``prefix``'s lock for ``seconds`` with ``pid_in_file`` recorded in it,
    as the install child of a create killed with SIGKILL does until its own death."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.pwrite(fd, sys.argv[2].encode(), 0)\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[3]))\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(prefixmod.lock_path(prefix)),
            str(pid_in_file),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_left_to_the_children_of_a_dead_create_is_waited_for(tmp_path: Path) -> None:
    """Found by the fault tests: right after a SIGKILL the create's install child still held the
    lock for a moment, and the rerun's recovery gave up and left the old env moved aside."""
    prefix = tmp_path / "env"
    holder = _hold_lock(prefix, _dead_pid(), seconds=0.5)
    try:
        with prefixtx.prefix_lock(prefix):
            assert holder.poll() is not None  # we got it only once the holder was gone
    finally:
        holder.kill()
        holder.communicate()


def test_a_lock_held_by_a_live_create_is_refused_at_once(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    holder = _hold_lock(prefix, os.getpid(), seconds=30)
    try:
        t0 = time.monotonic()
        with (
            pytest.raises(PrefixError, match=f"another conda unsloth create .*pid {os.getpid()}"),
            prefixtx.prefix_lock(prefix),
        ):
            pass
        assert time.monotonic() - t0 < prefixtx.ORPHAN_LOCK_WAIT_S / 2
    finally:
        holder.kill()
        holder.communicate()


def test_a_lock_the_children_of_a_dead_create_keep_is_refused_after_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefixtx, "ORPHAN_LOCK_WAIT_S", 0.3)
    prefix = tmp_path / "env"
    dead = _dead_pid()
    holder = _hold_lock(prefix, dead, seconds=30)
    try:
        with (
            pytest.raises(PrefixError, match=f"left by a create that ended \\(pid {dead}\\)"),
            prefixtx.prefix_lock(prefix),
        ):
            pass
    finally:
        holder.kill()
        holder.communicate()
