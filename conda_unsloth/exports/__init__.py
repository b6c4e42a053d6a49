"""Lock and environment formats we write, in one registry: the ``export`` and ``solve --lock``
verbs and conda's exporter plugins (``conda export --format unsloth-...``) all read it.

Each format's writer is its own module (``explicit``, ``condalock``, ``environment``);
:func:`render` writes a SolvedEnv in any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..solvers.base import SolvedEnv


@dataclass(frozen=True)
class Format:
    name: str
    aliases: tuple[str, ...]
    default_filenames: tuple[str, ...]
    description: str
    conda_name: str  # its name under `conda export --format` (prefixed: never conda's own)
    conda_filename: str  # the default file name conda's exporter registry gets
    conda_aliases: tuple[str, ...] = ()
    lockfile: bool = True  # pins exact builds with hashes (conda 26 lists these as lockfiles)


FORMATS: tuple[Format, ...] = (
    Format(
        "explicit",
        (),
        ("explicit.txt",),
        "@EXPLICIT with sha256, credentials redacted",
        "unsloth-explicit",
        "unsloth-explicit.txt",
    ),
    Format(
        "conda-lock",
        ("conda-lock-v1",),
        ("conda-lock.yml", "conda-lock.yaml"),
        "conda-lock v1 including the pip part with wheel hashes",
        "unsloth-conda-lock",
        "unsloth.conda-lock.yml",
        ("unsloth-lock",),
    ),
    Format(
        "environment",
        ("environment-yaml", "yaml", "yml"),
        ("environment.yml", "environment.yaml"),
        "fully pinned environment.yml",
        "unsloth-environment",
        "unsloth-environment.yml",
        lockfile=False,
    ),
)


def names() -> list[str]:
    """Every name and alias a ``--format`` accepts."""
    return sorted(n for f in FORMATS for n in (f.name, *f.aliases))


def by_name(name: str) -> Format:
    for f in FORMATS:
        if name in (f.name, *f.aliases, f.conda_name, *f.conda_aliases):
            return f
    raise UsageError(f"--format '{name}' is not a format; choose one of {', '.join(names())}")


def for_output(requested: str | None, output: str | None) -> Format:
    """The format asked for, else the one ``output``'s file name implies (``explicit.txt``,
    ``conda-lock.yml``, ``environment.yml``; other ``*lock*.yml`` -> conda-lock, other
    ``*.yml`` -> environment), else explicit."""
    if requested:
        return by_name(requested)
    if output:
        name = Path(output).name
        for f in FORMATS:
            if name in f.default_filenames:
                return f
        if name.endswith((".yml", ".yaml")):
            return by_name("conda-lock" if "lock" in name else "environment")
    return by_name("explicit")


def render(
    solved: SolvedEnv, fmt: Format, *, sources: tuple[str, ...] = (), name: str | None = None
) -> str:
    """``solved`` written in ``fmt`` (``sources``: what conda-lock records it was made from;
    ``name``: the environment.yml's name)."""
    if fmt.name == "explicit":
        from . import explicit

        return explicit.export(solved)
    if fmt.name == "conda-lock":
        from . import condalock

        return condalock.export(solved, sources=sources or ("environment.yml",))
    from . import environment

    return environment.export(solved, name=name)
