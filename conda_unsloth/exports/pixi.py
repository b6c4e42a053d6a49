"""A pixi manifest (``pixi.toml``) for a plan: ``conda unsloth env --for pixi``.

The same pins as the environment.yml (:func:`conda_unsloth.spec.from_selection`), written the
way pixi reads them (pixi's schema, v0.77.0, is the reference; pixi itself is not installable
where these tests run, see docs/tools.md):

- ``[workspace]``: the channels in priority order, ``channel-priority = "strict"``, and the
  target CUDA on the platform (``platforms = [{ platform = "linux-64", cuda = "12.1" }]``, the
  form that replaced ``[system-requirements]`` in pixi 0.71), hence ``requires-pixi >= 0.71``.
- ``[workspace.conda-pypi-map]``: which conda packages *are* torch, triton and xformers, so the
  PyPI solve (uv) takes conda's builds as installed and never replaces them (what the pins in
  the environment.yml's ``pip:`` section do for pip).
- ``[dependencies]``: every conda pin. pixi reads versions with rattler's rules, where a bare
  ``3.11`` is *exact*: conda's fuzzy ``=3.11`` is written ``3.11.*``, an exact pin ``==2.5.1``,
  a build pin as a table ``{ version, build, channel }``.
- ``[pypi-dependencies]``: Unsloth's companions, ``name = "==version"``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

from .. import __version__

if TYPE_CHECKING:
    from ..select import Selection
    from ..spec import EnvSpec

FORMAT: Final = "pixi"
DEFAULT_FILENAME: Final = "pixi.toml"
REQUIRES_PIXI: Final = ">=0.71"
# conda packages that are these PyPI distributions
PYPI_NAMES: Final = {
    "pytorch": "torch",
    "torchtriton": "triton",
    "triton": "triton",
    "xformers": "xformers",
}

_SPEC = re.compile(
    r"(?:(?P<chan>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"(?:(?P<sp>\s+)(?P<v1>\S+)(?:\s+(?P<b1>\S+))?"  # name VER [BUILD]
    r"|=(?P<v2>[^=<>!~,|\s]+)(?:=(?P<b2>\S+))?"  # name=VER[=BUILD]
    r"|(?P<op>(?:==|>=|<=|!=|~=|<|>).*))?"  # name==VER, name<V, name>=a,<b
)


def dependency(spec: str) -> tuple[str, str | dict[str, str]]:
    """One conda match spec as a pixi ``[dependencies]`` entry: (name, value). ValueError for
    a spec this writer does not know how to translate."""
    m = _SPEC.fullmatch(spec.strip())
    if m is None:
        raise ValueError(f"cannot write {spec!r} for pixi")
    name, chan = m["name"], m["chan"]
    if m["v1"] is not None:  # name VER [BUILD]: an exact version (conda, rattler, micromamba)
        version, build = f"=={m['v1']}", m["b1"]
    elif m["v2"] is not None:  # name=VER[=BUILD]
        if m["b2"] is not None:  # conda and rattler: ==VER with a build
            version, build = f"=={m['v2']}", m["b2"]
        else:  # fuzzy: VER.*
            version, build = f"{m['v2'].removesuffix('.*')}.*", None
    elif m["op"] is not None:
        version, build = m["op"].replace(" ", ""), None
    else:
        version, build = "*", None
    if build is None and chan is None:
        return name, version
    table = {"version": version}
    if build is not None:
        table["build"] = build
    if chan is not None:
        table["channel"] = chan
    return name, table


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _value(v: Any) -> str:
    """A TOML value: strings as basic strings (JSON's escapes are TOML's), a dict as an inline
    table, a list as an array."""
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def manifest(sel: Selection, spec: EnvSpec, name: str | None = None) -> dict[str, Any]:
    """The manifest as data (what :func:`render` writes, and what tests parse back)."""
    p = sel.profile
    channels = [c for c in spec.channels if c != "nodefaults"]
    deps: dict[str, Any] = {}
    maps: dict[str, dict[str, str]] = {}
    for d in spec.conda:
        if d.spec == "pip":  # pixi installs PyPI packages with uv: no pip needed
            continue
        key, value = dependency(d.spec)
        deps[key] = value
        if key in PYPI_NAMES:  # unqualified (torchtriton, triton): the torch channel, first
            chan = value.get("channel") if isinstance(value, dict) else None
            maps.setdefault(chan or channels[0], {})[key] = PYPI_NAMES[key]
    maps = {c: m for c, m in maps.items() if m}
    workspace: dict[str, Any] = {
        "name": name or spec.name or f"unsloth-{p.name}-cu{sel.cuda.replace('.', '')}",
        "channels": channels,
        "channel-priority": "strict",
        "platforms": [{"platform": sel.target.platform, "cuda": sel.cuda}],
        "requires-pixi": REQUIRES_PIXI,
        "conda-pypi-map": {c: {"mapping": m} for c, m in maps.items()},
    }
    pypi = {d.spec.split("==")[0]: "==" + d.spec.split("==")[1] for d in spec.pip}
    return {"workspace": workspace, "dependencies": deps, "pypi-dependencies": pypi}


def render(sel: Selection, spec: EnvSpec, name: str | None = None) -> str:
    """``pixi.toml`` text: :func:`manifest` with a comment on every pin saying why."""
    doc = manifest(sel, spec, name)
    why = {d.spec: d.why for d in spec.conda}
    conda_why = {}
    for d in spec.conda:
        if d.spec != "pip":
            conda_why[dependency(d.spec)[0]] = why[d.spec]
    pip_why = {d.spec.split("==")[0]: d.why for d in spec.pip}
    ws = doc["workspace"]
    lines = [
        f"# Unsloth GPU environment, profile {sel.profile.name}: CUDA {sel.cuda}, python "
        f"{sel.python}, pytorch {sel.pytorch.version}, xformers {sel.xformers.version}, "
        f"unsloth {sel.unsloth.version}.",
        f"# Generated by conda-unsloth {__version__} for pixi {REQUIRES_PIXI} (pixi's schema "
        "v0.77.0); build it with",
        "#   pixi install        (in this file's folder; `pixi run python` runs in it)",
        "# On a host without a GPU driver pixi still solves for the CUDA declared on the "
        "platform below.",
        "",
        "[workspace]",
    ]
    for k in ("name", "channels", "channel-priority", "platforms", "requires-pixi"):
        lines.append(f"{k} = {_value(ws[k])}")
    if ws["conda-pypi-map"]:
        lines += [
            "",
            "# conda packages that ARE these PyPI distributions: the PyPI solve takes conda's",
            "# builds as installed and never replaces them",
            "[workspace.conda-pypi-map]",
        ]
        for chan, table in ws["conda-pypi-map"].items():
            lines.append(f"{_key(chan)} = {_value(table)}")
    lines += ["", "[dependencies]"]
    width = max(len(f"{_key(k)} = {_value(v)}") for k, v in doc["dependencies"].items())
    for k, v in doc["dependencies"].items():
        entry = f"{_key(k)} = {_value(v)}"
        note = conda_why.get(k, "")
        lines.append(f"{entry:<{width}}  # {note}" if note else entry)
    lines += ["", "[pypi-dependencies]"]
    width = max(
        (len(f"{_key(k)} = {_value(v)}") for k, v in doc["pypi-dependencies"].items()), default=0
    )
    for k, v in doc["pypi-dependencies"].items():
        entry = f"{_key(k)} = {_value(v)}"
        note = pip_why.get(k, "")
        lines.append(f"{entry:<{width}}  # {note}" if note else entry)
    return "\n".join(lines) + "\n"
