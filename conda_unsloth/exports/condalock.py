"""conda-lock v1 lock (CEP 37): one YAML file with the conda packages (url, md5 + sha256,
dependencies) and the pip packages of the environment.

conda-lock's model requires an md5 for every conda entry and a non-empty url for every entry.
pip packages carry ``manager: pip`` with their wheel url and sha256 when the solve knows them;
pip pins without a wheel url (the solver does not resolve PyPI) and requirements that are not
``name==version`` pins (``unsloth``, ``transformers>=4.46``, ``pkg @ git+https://...``) cannot be
valid entries and are recorded under ``metadata.custom_metadata`` (``pip_requirements``: a
string, one requirement a line, since conda-lock's model takes only string values) instead, so
the file stays loadable by ``conda-lock install`` and still names every requirement.
Credentials are removed from every URL.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any, Final

from .. import __version__
from ..errors import SolveError
from ..redact import redact_text, redact_url
from .explicit import ordered, pip_unpinned

if TYPE_CHECKING:
    from ..solvers.base import Record, SolvedEnv

FORMAT: Final = "conda-lock"
ALIASES: Final = ("conda-lock-v1",)
DEFAULT_FILENAMES: Final = ("conda-lock.yml", "conda-lock.yaml")


def dependencies(rec: Record) -> dict[str, str]:
    """``depends`` as conda-lock's mapping: name -> the rest of the spec (``''`` if none)."""
    out: dict[str, str] = {}
    for dep in rec.depends:
        parts = dep.split(None, 1)
        if not parts:
            continue
        name, rest = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if not out.get(name):
            out[name] = rest
        elif rest and " " not in out[name] and " " not in rest:  # two version ranges: AND
            out[name] = f"{out[name]},{rest}"
    return out


def content_hash(solved: SolvedEnv) -> str:
    """sha256 of what the lock was solved from: channels, specs, platform, virtual packages."""
    spec = solved.spec
    doc = {
        "channels": [redact_url(c) for c in solved.channels],
        "platform": solved.platform,
        "virtual_packages": list(solved.virtual_packages),
        "specs": spec.conda_specs() if spec else [r.name for r in solved.records],
        "pip": spec.pip_requirements() if spec else [f"{p.name}=={p.version}" for p in solved.pip],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def to_dict(solved: SolvedEnv, sources: tuple[str, ...] = ("environment.yml",)) -> dict[str, Any]:
    packages: list[dict[str, Any]] = []
    for rec in ordered(solved.records):
        if not rec.md5:
            raise SolveError(
                f"{rec.name} {rec.version} {rec.build} has no md5 in its channel's repodata; "
                "conda-lock v1 requires one",
                hints=["use --format explicit (sha256 only)"],
            )
        hashes = {"md5": rec.md5}
        if rec.sha256:
            hashes["sha256"] = rec.sha256
        packages.append(
            {
                "name": rec.name,
                "version": rec.version,
                "manager": "conda",
                "platform": solved.platform,
                "dependencies": dependencies(rec),
                "url": redact_url(rec.url),
                "hash": hashes,
                "build": rec.build,
                "category": "main",
                "optional": False,
            }
        )
    unlocked: list[str] = []
    for p in solved.pip:
        if not p.url or not p.sha256:
            unlocked.append(f"{p.name}=={p.version}")
            continue
        packages.append(
            {
                "name": p.name,
                "version": p.version,
                "manager": "pip",
                "platform": solved.platform,
                "dependencies": {},
                "url": redact_url(p.url),
                "hash": {"sha256": p.sha256},
                "category": "main",
                "optional": False,
            }
        )
    unlocked += [redact_text(r) for r in pip_unpinned(solved)]
    custom = {
        "created_by": f"conda-unsloth {__version__}",
        "solver": solved.solver,
        "virtual_packages": " ".join(solved.virtual_packages),
    }
    if unlocked:
        custom["pip_requirements"] = "\n".join(unlocked)
    if solved.pip_constraints:
        custom["pip_constraints"] = " ".join(solved.pip_constraints)
    return {
        "version": 1,
        "metadata": {
            "content_hash": {solved.platform: content_hash(solved)},
            "channels": [{"url": redact_url(c), "used_env_vars": []} for c in solved.channels],
            "platforms": [solved.platform],
            "sources": list(sources),
            "custom_metadata": custom,
        },
        "package": packages,
    }


def export(solved: SolvedEnv, sources: tuple[str, ...] = ("environment.yml",)) -> str:
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.width = 4096
    y.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buf = io.StringIO()
    buf.write("# conda-lock v1 lock file (CEP 37) generated by conda-unsloth.\n")
    buf.write("# Install: conda-lock install -n ENV THIS_FILE\n")
    buf.write(
        "#      or: micromamba create -n ENV -f THIS_FILE   (conda and pip parts, hashes checked;\n"
    )
    buf.write("#          micromamba reads it as a lock only when its name ends in -lock.yml)\n")
    y.dump(to_dict(solved, sources), buf)
    return buf.getvalue()
