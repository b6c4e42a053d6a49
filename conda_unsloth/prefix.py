"""Environment locations: resolve ``-n NAME`` / ``-p PREFIX`` the way conda does, without
importing conda. The env directories come from the runtime (conda's ``context.envs_dirs``
inside conda, :func:`conda_unsloth.runtime.standalone_envs_dirs` otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import PrefixError, UsageError

RESERVED_NAMES = ("base", "root")  # conda's names for its root environment


def validate_name(name: str) -> str:
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
        if not prefix.strip() or not prefix.isprintable():
            shown = repr(prefix)
            raise UsageError(
                f"-p {shown} is not a usable path (empty, or with control characters)",
                hints=["give a full path like -p /opt/envs/unsloth"],
            )
        path = Path(prefix).expanduser().absolute()
        if not path.name or path.name in (".", ".."):
            raise UsageError(
                f"-p {prefix} names no environment directory (it resolves to {path}); give a "
                "path like /opt/envs/unsloth",
            )
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
    from .prefixtx import pending

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
