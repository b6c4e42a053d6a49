"""Which installer runs the pip stage (uv >= 0.13 from the env, PATH or the ``uv`` Python
package, else the env's pip; see :mod:`conda_unsloth.pipstage`) and how an installer child
runs: its environment (no ``PIP_*``/``UV_*``, no config files) and the process itself."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InstallError, UsageError
from .wheelsources import Sources

Say = Callable[[str], None]

INSTALLERS = ("auto", "uv", "pip")
MIN_UV = (0, 13, 0)  # `uv pip install --dry-run --output-format json`


def quiet(msg: str) -> None:
    return None


@dataclass(frozen=True)
class Installer:
    kind: str  # "uv" | "pip"
    exe: str  # the uv binary, or the env's python (pip)
    version: str
    where: str  # "the env", "PATH", "the uv Python package", "the env's pip"

    def label(self) -> str:
        return f"{self.kind} {self.version}" if self.version else self.kind


def uv_candidates(prefix: Path | None) -> Iterator[tuple[str, str]]:
    """Where a uv may be, in order: the env's own, PATH, the ``uv`` Python package (looked at
    only when the ones before it do not serve: importing it costs a few ms)."""
    seen: set[str] = set()

    def new(exe: str) -> bool:
        real = os.path.realpath(exe)
        if real in seen:
            return False
        seen.add(real)
        return True

    if prefix is not None and os.access(prefix / "bin" / "uv", os.X_OK):
        own = str(prefix / "bin" / "uv")
        if new(own):
            yield own, "the env"
    on_path = shutil.which("uv")
    if on_path and new(on_path):
        yield on_path, "PATH"
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        packaged = str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return
    if new(packaged):
        yield packaged, "the uv Python package"


def uv_version(exe: str) -> tuple[int, ...] | None:
    """``uv --version`` as numbers (None: not a working uv); asked once per binary."""
    try:
        st = Path(exe).stat()
    except OSError:
        return None
    return _uv_version(exe, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _uv_version(exe: str, mtime_ns: int, size: int) -> tuple[int, ...] | None:
    try:
        proc = subprocess.run(
            [exe, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env("uv", Sources()),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"^uv (\d+)\.(\d+)\.(\d+)", proc.stdout.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def env_has_pip(prefix: Path) -> bool:
    return any((prefix / "lib").glob("python3*/site-packages/pip/__main__.py"))


def _toml_available() -> bool:
    if sys.version_info >= (3, 11):
        return True
    import importlib.util

    return importlib.util.find_spec("tomli") is not None


def choose_installer(
    prefix: Path | None, wanted: str, *, pip_in_env: bool | None = None, say: Say = quiet
) -> Installer:
    """The installer for the pip stage (:mod:`conda_unsloth.pipstage`). ``prefix`` None:
    before the env is built, with ``pip_in_env`` saying whether it will have pip."""
    if wanted not in INSTALLERS:
        raise UsageError(f"--pip-installer '{wanted}': choose one of {', '.join(INSTALLERS)}")
    has_pip = pip_in_env if pip_in_env is not None else prefix is not None and env_has_pip(prefix)
    skipped: list[str] = []
    if wanted in ("auto", "uv"):
        for exe, where in uv_candidates(prefix):
            version = uv_version(exe)
            shown = ".".join(map(str, version)) if version else "?"
            if version is None:
                skipped.append(f"{exe} ({where}) does not run")
            elif version < MIN_UV:
                skipped.append(f"uv {shown} from {where} is older than {dotted(MIN_UV)}")
            elif not _toml_available():
                skipped.append(
                    f"uv {shown} from {where}: reading its lock needs tomli on Python 3.10"
                )
            else:
                return Installer("uv", exe, shown, where)
        if wanted == "uv":
            why = "; ".join(skipped) or "no uv in the env, on PATH or as the uv Python package"
            raise UsageError(
                f"--pip-installer uv: {why}",
                hints=[
                    f"pip install 'uv>={dotted(MIN_UV)}' (or 'conda-unsloth[uv]')",
                    "or --pip-installer pip to use the env's pip",
                ],
            )
        if skipped:
            say("not using uv: " + "; ".join(skipped))
    if has_pip:
        python = str(prefix / "bin" / "python") if prefix is not None else "python"
        return Installer("pip", python, "", "the env's pip")
    if wanted == "pip":
        raise InstallError(
            "--pip-installer pip, but the env has no pip (no pip among its conda packages)",
            hints=[
                "add pip to the env's conda packages, or leave --pip-installer out to use uv",
            ],
        )
    raise InstallError(
        "no installer for the pip stage: the env has no pip, and "
        + (
            "; ".join(skipped)
            if skipped
            else "no uv was found (in the env, on PATH, or as the uv Python package)"
        ),
        hints=[
            f"pip install 'conda-unsloth[uv]' (uv >= {dotted(MIN_UV)})",
            "or add pip to the env's conda packages",
        ],
    )


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


# ----------------------------------------------------------------------------- children


_DROP_PREFIXES = ("PIP_", "UV_")
_DROP = frozenset(
    {
        "PYTHONDONTWRITEBYTECODE",  # we compile what we install; pip would recompile itself
        "PYTHONPATH",  # another site-packages would count as installed
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "PYTHONPYCACHEPREFIX",  # pycs belong in the env
        "VIRTUAL_ENV",
        "PYC_INVALIDATION_MODE",
    }
)


def child_env(kind: str, src: Sources) -> dict[str, str]:
    """The environment of an installer child: no PIP_*/UV_* (their settings come in as
    options), no config files, nothing that changes what the env's python sees."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROP
        and (not k.startswith(_DROP_PREFIXES) or re.match(r"^UV_INDEX_.+_(USERNAME|PASSWORD)$", k))
    }
    env["PYTHONNOUSERSITE"] = "1"
    if kind == "pip":
        env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
    else:
        env["UV_NO_CONFIG"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env.update(src.uv_env())
    return env


def run(
    cmd: list[str], what: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """An installer writes into the prefix: run it like rattler's child (prefixtx.run_child)."""
    from ..prefixtx import run_child

    try:
        code, out, err = run_child(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(cwd)
        )
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    return subprocess.CompletedProcess(cmd, code, out, err)
