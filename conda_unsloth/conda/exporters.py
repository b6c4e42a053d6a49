"""`conda export --format unsloth-…` (conda >= 25.7's environment exporter plugins): the same
explicit / conda-lock / environment exports as `conda unsloth export`, for the environment conda
hands us. We read the prefix ourselves (records with hashes, pip wheels with their sha256 from
our marker), so the output is identical to the verb's; channel credentials are redacted. An
installed environment can only be exported for its own platform: ``conda export --platform
OTHER`` is refused (we do not re-solve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError


def exporter_kwargs(fields: set[str]) -> list[dict[str, Any]]:
    """``CondaEnvironmentExporter`` arguments for each of our formats, for the fields the
    running conda's class has (``description`` is newer than the hook; ``environment_format``,
    conda >= 26.x, puts exact-build-with-hash formats under "Lockfiles" in ``conda export
    --help`` instead of "Environment specs")."""
    import functools

    from ..exports import FORMATS

    kinds = None
    if "environment_format" in fields:
        from conda.plugins import types

        kinds = getattr(types, "EnvironmentFormat", None)
    out = []
    for f in FORMATS:
        kwargs: dict[str, Any] = {
            "name": f.conda_name,
            "aliases": f.conda_aliases,
            "default_filenames": (f.conda_filename,),
            "export": functools.partial(export, f.conda_name),
        }
        if "description" in fields:
            kwargs["description"] = f.description
        if kinds is not None:
            kwargs["environment_format"] = kinds.lockfile if f.lockfile else kinds.environment
        out.append(kwargs)
    return out


def export(name: str, env: Any) -> str:
    """The exporter hook's ``export(env)`` (bound to a format name): the verb's own rendering of
    the prefix conda's Environment points at."""
    from ..exports import by_name
    from ..exports.installed import render_installed, solved_from_prefix

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
    return render_installed(solved, by_name(name), Path(prefix)).rstrip("\n")
