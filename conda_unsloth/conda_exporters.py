"""`conda export --format unsloth-…` (conda >= 25.7's environment exporter plugins): the same
explicit / conda-lock / environment exports as `conda unsloth export`, for the environment conda
hands us. We read the prefix ourselves (records with hashes, pip wheels with their sha256 from
our marker), so the output is identical to the verb's; channel credentials are redacted. An
installed environment can only be exported for its own platform: ``conda export --platform
OTHER`` is refused (we do not re-solve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError

# name -> (aliases, default file names, description); names are prefixed so they never collide
# with conda's own `explicit` / `environment-yaml` or conda-lockfiles' `conda-lock-v1`.
EXPORTERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "unsloth-explicit": (
        (),
        ("unsloth-explicit.txt",),
        "@EXPLICIT with sha256, credentials redacted",
    ),
    "unsloth-conda-lock": (
        ("unsloth-lock",),
        ("unsloth.conda-lock.yml",),
        "conda-lock v1 including the pip part with wheel hashes",
    ),
    "unsloth-environment": ((), ("unsloth-environment.yml",), "fully pinned environment.yml"),
}


FORMATS = {
    "unsloth-explicit": "explicit",
    "unsloth-conda-lock": "conda-lock",
    "unsloth-environment": "environment",
}


def export(name: str, env: Any) -> str:
    """The exporter hook's ``export(env)`` (bound to a format name): the verb's own rendering of
    the prefix conda's Environment points at."""
    from .cli.export import render_export, solved_from_prefix

    prefix = getattr(env, "prefix", None)
    if not prefix:
        raise UsageError("conda-unsloth exporters need an installed environment (-n/-p)")
    solved = solved_from_prefix(Path(prefix))
    wanted = getattr(env, "platform", None)
    if wanted and wanted != solved.platform:
        raise UsageError(
            f"--format {name} exports the installed {solved.platform} packages of {prefix}; "
            f"it cannot export them for platform {wanted}",
            hints=[f"drop --platform {wanted}, or solve for it: conda unsloth solve --lock ..."],
        )
    return render_export(solved, FORMATS[name], Path(prefix)).rstrip("\n")
