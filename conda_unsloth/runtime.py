"""How this process runs the verbs: as the standalone ``conda-unsloth`` or as conda's plugin
(``conda unsloth``). Each entry point builds one :class:`Runtime` and passes it down to the verb
(``__main__`` makes :func:`standalone`, the plugin's hook makes
``conda_unsloth.conda.runtime.runtime()``); nothing below guesses "inside conda" from global
state. The core never imports conda: what differs inside conda (the libmamba solver, conda's
transaction, conda's env directories and root prefix) comes in through this object.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .solvers.base import Record, Solver

# conda packages into a prefix: (records, prefix, show_progress)
Installer = Callable[["Sequence[Record]", Path, bool], None]


@dataclass(frozen=True)
class Runtime:
    command: str  # what the user typed to run us: hints name it ("conda unsloth", "conda-unsloth")
    conda: bool  # running inside conda: conda's parser helpers, context and transaction
    default_solver: str
    solvers: Mapping[str, Callable[[], Solver]]
    install: Installer
    envs_dirs: Callable[[], list[Path]]
    # prefixes a create must never replace besides the running interpreter's (conda's root)
    roots: Callable[[], list[Path]] = field(default=lambda: [])
    # `create --installer NAME`: the installers this runtime has besides ``install`` (the
    # default), each with the solver it implies when --solver is not given
    # (and a check that it is there, run when the installer is chosen: before any work)
    installers: Mapping[str, tuple[Installer, str | None, Callable[[], object]]] = field(
        default_factory=dict
    )
    # the installer when --installer is not given (None: ``install``); a callable: decided
    # when a create asks, not at start-up
    auto_installer: Callable[[], str | None] = field(default=lambda: None)
    installer_name: str = "conda"  # what ``install`` is: "conda", "rattler" or "micromamba"

    def with_installer(self, name: str | None, solver: str | None = None) -> Runtime:
        """This runtime installing with ``name`` (None: the default, see ``auto_installer``)
        and, unless ``solver`` is given, solving with the solver that installer implies
        (micromamba: libmamba through micromamba)."""
        from dataclasses import replace

        chosen = name or self.auto_installer()
        if chosen is None:
            return self
        if chosen not in self.installers:
            if chosen == "conda":
                raise UsageError(
                    # no "conda unsloth " here: hint() would turn it into this very command
                    "--installer conda needs conda: run create as conda's `unsloth` subcommand",
                    hints=["standalone conda-unsloth installs with rattler or micromamba"],
                )
            if not self.installers:  # inside conda
                raise UsageError(
                    f"--installer {chosen}: inside conda, conda's transaction installs",
                    hints=[f"standalone: conda-unsloth create --installer {chosen}"],
                )
            raise UsageError(
                f"--installer {chosen}: not available here (choose {', '.join(self.installers)})"
            )
        install, implied, check = self.installers[chosen]
        check()
        return replace(
            self,
            install=install,
            default_solver=solver or implied or self.default_solver,
            installer_name=chosen,
        )

    def solver(self, name: str | None) -> Solver:
        """The backend ``name``; None: this runtime's default."""
        chosen = (name or self.default_solver).strip().lower()
        factory = self.solvers.get(chosen)
        if factory is None:
            known = ", ".join(self.solvers)
            if chosen == "libmamba":
                raise UsageError(
                    "--solver libmamba needs conda with conda-libmamba-solver; standalone "
                    "conda-unsloth solves with rattler",
                    hints=[
                        "inside conda (its `unsloth` subcommand) libmamba is the default",
                        "or leave --solver out (rattler)",
                    ],
                )
            raise UsageError(f"--solver '{name}' is not a solver here; choose one of {known}")
        return factory()

    def hint(self, text: str) -> str:
        """A hint written as ``conda unsloth ...`` in the command this user runs."""
        return text.replace("conda unsloth ", f"{self.command} ")


def _rattler_solver() -> Solver:
    from .solvers.rattler import RattlerSolver

    return RattlerSolver()


def _micromamba_solver() -> Solver:
    from .micromamba import require
    from .micromamba.solver import MicromambaSolver

    return MicromambaSolver(require())


def _micromamba_install(records: Sequence[Record], prefix: Path, show_progress: bool) -> None:
    from .micromamba import install

    install(records, prefix, show_progress)


def _nothing() -> None:
    return None


def _micromamba_present() -> object:
    from .micromamba import require

    return require()


def auto_installer() -> str | None:
    """The standalone default: micromamba when the user has it ($MAMBA_EXE or PATH) and no
    conda; otherwise None (py-rattler, embedded)."""
    from .micromamba import conda_present, find

    return "micromamba" if find() is not None and not conda_present() else None


def standalone_envs_dirs() -> list[Path]:
    """Where named environments live without conda, in conda's search order (best effort)."""
    dirs: list[Path] = []
    for var in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        for entry in os.environ.get(var, "").split(os.pathsep):
            if entry:
                dirs.append(Path(entry).expanduser())
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        root = os.environ.get(var)
        if root:
            dirs.append(Path(root) / "envs")
    exe = os.environ.get("CONDA_EXE")
    if exe:
        dirs.append(Path(exe).resolve().parent.parent / "envs")
    home = Path.home()
    dirs.append(home / ".conda" / "envs")
    for base in ("miniforge3", "mambaforge", "miniconda3", "anaconda3"):
        dirs.append(home / base / "envs")
    return list(dict.fromkeys(dirs))


def _rattler_install(records: Sequence[Record], prefix: Path, show_progress: bool) -> None:
    """:func:`conda_unsloth.install.install_with_rattler`, imported when a create installs
    (not by every verb that only needs a runtime)."""
    from .install import install_with_rattler

    install_with_rattler(records, prefix, show_progress)


def standalone(command: str = "conda-unsloth") -> Runtime:
    """The runtime of ``conda-unsloth`` / ``python -m conda_unsloth``: py-rattler solves and
    installs (in a child process, see :func:`conda_unsloth.install.install_with_rattler`), or
    micromamba (``create --installer micromamba``; the default when the user has micromamba
    and no conda: :func:`auto_installer`)."""
    return Runtime(
        command=command,
        conda=False,
        default_solver="rattler",
        solvers={"rattler": _rattler_solver, "micromamba": _micromamba_solver},
        install=_rattler_install,
        installer_name="rattler",
        envs_dirs=standalone_envs_dirs,
        installers={
            "rattler": (_rattler_install, "rattler", _nothing),
            "micromamba": (_micromamba_install, "micromamba", _micromamba_present),
        },
        auto_installer=auto_installer,
    )


def command_of(argv0: str | None = None) -> str:
    """How the standalone entry point was run (``conda-unsloth`` or ``python -m
    conda_unsloth``), for hints."""
    path = Path(argv0 or sys.argv[0])
    if path.name == "__main__.py" and path.parent.name == "conda_unsloth":
        return "python -m conda_unsloth"
    return "conda-unsloth"
