"""Environment locations: resolve ``-n NAME`` / ``-p PREFIX`` the way conda does, without
importing conda. The env directories come from the runtime (conda's ``context.envs_dirs``
inside conda, :func:`conda_unsloth.runtime.standalone_envs_dirs` otherwise)."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import PrefixError, UsageError

RESERVED_NAMES = ("base", "root")  # conda's names for its root environment


def validate_name(name: str) -> str:
    from .outputs import refuse_control

    refuse_control(name, "-n")
    bad = set("/\\:#") & set(name)
    if (
        not name
        or bad
        or name in (".", "..")
        or name.startswith("-")
        or " " in name
        or not name.isprintable()
    ):
        shown = repr(name) if not name.isprintable() else f"'{name}'"
        raise UsageError(
            f"-n {shown} is not a valid environment name (no spaces, control characters, '/', "
            "':', '#')",
            hints=["use -p /full/path for an arbitrary location"],
        )
    return name


def validate_new_name(name: str) -> str:
    """A name for a new environment: valid, and not conda's root environment."""
    if validate_name(name) in RESERVED_NAMES:
        raise UsageError(
            f"-n {name} is reserved: it names conda's root environment, which conda unsloth "
            "never builds into",
            hints=["choose another name, e.g. -n unsloth"],
        )
    return name


def resolve_existing(name: str | None, prefix: str | None, envs_dirs: list[Path]) -> Path:
    """The prefix of an existing environment; PrefixError when there is none, or when a create
    of it is running or was killed half-way (its journal is beside it)."""
    if prefix:
        path = Path(prefix).expanduser().absolute()
        _refuse_unfinished(path)
        if not path.exists():
            raise PrefixError(
                f"prefix {path} does not exist",
                hints=[f"conda unsloth create -p {path}"],
            )
        if not path.is_dir():
            raise PrefixError(f"prefix {path} is a file, not an environment")
        if not is_env(path):
            raise PrefixError(
                f"{path} is not a conda environment (no conda-meta/ folder)",
                hints=["conda env list shows your environments"],
            )
        return path
    if name:
        validate_name(name)
        for d in envs_dirs:
            cand = d / name
            _refuse_unfinished(cand)
            if is_env(cand):
                return cand.absolute()
        raise PrefixError(
            f"no environment named '{name}' in {', '.join(str(d) for d in envs_dirs[:3])}...",
            hints=["conda env list shows your environments", "or use -p /path/to/env"],
        )
    active = os.environ.get("CONDA_PREFIX")
    if active and is_env(Path(active)):
        return Path(active)
    raise UsageError("no environment given: use -n NAME or -p PREFIX")


def new_prefix(name: str | None, prefix: str | None, envs_dirs: list[Path]) -> Path:
    """Where a new environment goes (it may already exist: callers decide)."""
    if prefix is not None:
        if not prefix.strip():
            raise UsageError(
                "-p '' is empty; give the environment's path, e.g. -p /opt/envs/unsloth"
            )
        path = Path(prefix).expanduser().absolute()
        check_prefix_path(path)
        return path
    if name:
        validate_new_name(name)
        for d in envs_dirs:  # an env of that name anywhere on the search path is the one
            if os.path.lexists(d / name):  # `conda activate NAME` would find: that is the target
                return (d / name).absolute()
        for d in envs_dirs:
            if d.is_dir() and os.access(d, os.W_OK):
                return (d / name).absolute()
        first = envs_dirs[0]
        return (first / name).absolute()
    raise UsageError("give the new environment a name with -n NAME or a location with -p PREFIX")


def _refuse_unfinished(path: Path) -> None:
    if pending(path):
        raise PrefixError(
            f"a conda unsloth create of {path} is running, or was killed before it finished; "
            "its files may be half-built or moved aside",
            hints=[
                f"conda unsloth create -p {path} finishes an interrupted create's clean-up "
                "first (then stops if the env is there)"
            ],
        )


def is_env(path: Path) -> bool:
    return (path / "conda-meta").is_dir()


# ----------------------------------------------------------------------------- beside a prefix
# The lock, journal, backup and trash of a create sit next to the prefix (prefixtx.py owns the
# protocol; the names live here so that resolving an env never imports the transaction).


def check_prefix_path(prefix: Path) -> None:
    """Refuse a prefix path that names no directory of its own (``/``, ``x/..``, ``.``) or
    holds a control character (PrefixError / UsageError, one line, before any work)."""
    from .errors import UsageError
    from .outputs import control_char

    bad = control_char(str(prefix))
    if bad is not None:
        raise UsageError(
            f"prefix {str(prefix)!r} contains {bad}; refusing it",
            hints=["use a path without control characters"],
        )
    if prefix.name in ("", ".", ".."):
        raise PrefixError(
            f"prefix {prefix} names no directory of its own; give the environment's own path",
            hints=["e.g. -p /path/to/envs/NAME"],
        )


def _side(prefix: Path, kind: str) -> Path:
    """A file beside the prefix; long names are shortened so it fits NAME_MAX."""
    check_prefix_path(prefix)
    name = prefix.name
    if len(name) > 180:
        name = name[:100] + "-" + hashlib.sha256(prefix.name.encode()).hexdigest()[:16]
    return prefix.with_name(f".{name}.conda-unsloth-{kind}")


def lock_path(prefix: Path) -> Path:
    return _side(prefix, "lock")


def journal_path(prefix: Path) -> Path:
    return _side(prefix, "journal")


def backup_path(prefix: Path) -> Path:
    return _side(prefix, f"backup-{os.getpid()}")


def trash_path(prefix: Path) -> Path:
    return _side(prefix, f"trash-{os.getpid()}-{time.monotonic_ns()}")


def _journal_tmp(prefix: Path) -> Path:
    path = journal_path(prefix)
    return path.with_name(path.name + ".tmp")


def pending(prefix: Path) -> bool:
    """Did a create of ``prefix`` die and leave work for ``recover``?"""
    return (
        os.path.lexists(journal_path(prefix))
        or os.path.lexists(_journal_tmp(prefix))
        or bool(_trash(prefix))
    )


def _trash(prefix: Path) -> list[Path]:
    stem = _side(prefix, "trash-").name
    return [p for p in prefix.parent.glob(glob.escape(stem) + "*")]


# ----------------------------------------------------------------------------- safety
# Which prefixes a create may build or replace.


def _roots(extra: Sequence[Path] = ()) -> list[Path]:
    roots = [Path(sys.prefix), Path(sys.base_prefix), *extra]
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX", "CONDA_PREFIX"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]))
    exe = os.environ.get("CONDA_EXE")
    if exe:
        roots.append(Path(exe).resolve().parent.parent)
    return roots


def check_safe(prefix: Path, roots: Sequence[Path] = ()) -> None:
    """Refuse prefixes whose replacement or creation would hurt: a conda root (``roots``: the
    runtime's, e.g. conda's root prefix) or the running interpreter's env, the active env, a
    prefix holding other envs, one nested in an env, a symlink."""
    check_prefix_path(prefix)
    real = prefix.resolve()
    for root in _roots(roots):
        with contextlib.suppress(OSError):
            if real == root.resolve():
                raise PrefixError(
                    f"{prefix} is a conda root, the active environment or the environment "
                    "running this command; refusing to build there",
                    hints=["choose a new -n NAME or -p PATH"],
                )
    if prefix.is_symlink():
        raise PrefixError(f"{prefix} is a symbolic link; give the real path ({real})")
    for parent in real.parents:
        if is_env(parent):
            raise PrefixError(
                f"{prefix} is inside the environment {parent}; environments cannot be nested",
                hints=["choose a path outside it, e.g. -n NAME"],
            )
    if real.is_dir() and (
        (real / "condabin").is_dir()
        or (real / "pkgs").is_dir()
        or any(real.glob("*/conda-meta"))
        or any(real.glob("*/*/conda-meta"))
    ):
        raise PrefixError(
            f"{prefix} looks like a conda installation or holds other environments; "
            "refusing to build there",
            hints=["choose a new -n NAME or -p PATH"],
        )


def check_target(prefix: Path, force: bool, roots: Sequence[Path] = ()) -> bool:
    """Refuse to touch an existing prefix without ``force``; return True if it will be replaced."""
    check_safe(prefix, roots)
    if not os.path.lexists(prefix):
        return False
    replaceable = prefix.is_dir() and (is_env(prefix) or not any(prefix.iterdir()))
    if not replaceable:
        what = "directory" if prefix.is_dir() else "file"
        raise PrefixError(
            f"{prefix} already exists and is a {what}, not a conda environment; nothing was "
            "changed "
            "(--force replaces only an environment or an empty directory)",
            hints=["choose another -n NAME or -p PATH"],
        )
    if not force:
        what = "environment" if is_env(prefix) else ("directory" if prefix.is_dir() else "file")
        raise PrefixError(
            f"{prefix} already exists ({what}); nothing was changed",
            hints=[
                "add --force to replace it once the new env is built and verified",
                "or choose another -n/-p",
            ],
        )
    return True
