"""EnvSpec: what an environment must contain, and its environment.yml form.

The YAML is written by ruamel's round-trip dumper in conda's own style (2-space mappings,
sequences indented under their key, no key sorting, block style) with a comment on every pin
saying why. It is usable by plain ``conda env create -f`` without this plugin. Reading accepts
any CEP-24 environment.yml (name/channels/dependencies/pip/variables/prefix).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import SpecError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .select import Selection

MAX_ENV_FILE_BYTES = 1_000_000
KNOWN_KEYS = ("name", "channels", "dependencies", "variables", "prefix")


@dataclass(frozen=True)
class Dep:
    spec: str
    why: str = ""


@dataclass
class EnvSpec:
    name: str | None
    channels: list[str]
    conda: list[Dep]
    pip: list[Dep] = field(default_factory=list)
    pip_constraints: list[Dep] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)

    def conda_specs(self) -> list[str]:
        return [d.spec for d in self.conda]

    def pip_requirements(self) -> list[str]:
        return [d.spec for d in self.pip if not d.spec.startswith("-")]


def _yaml() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.indent(mapping=2, sequence=4, offset=2)
    y.default_flow_style = False
    y.width = 4096
    return y


# What each tool the file is written for (``conda unsloth env --for TOOL``) needs; see
# docs/tools.md, where the tests that show it are named. None: every tool (the default).
TOOLS = ("conda", "micromamba", "pixi")
# conda distributions that are Python distributions under another name: a pip pin of one of
# these (with the conda package in the same file) pins conda's package for pip
CONDA_DISTS = {
    "torch": ("pytorch",),
    "triton": ("torchtriton", "triton"),
    "xformers": ("xformers",),
}


def portable_spec(spec: str) -> str:
    """``[chan::]name=VER=BUILD`` as ``[chan::]name VER BUILD``: conda, rattler and conda-lock
    read ``=VER=BUILD`` as ``==VER``, micromamba/mamba 2 as ``VER.*`` (2.5.1 would admit a
    2.5.1.1 or 2.5.1post1); the space form is ``==VER`` plus the build in all of them
    (tests/micromamba/test_files.py). Every other spec is returned as is."""
    m = re.fullmatch(
        r"(?P<head>(?:[^\s:]+::)?[A-Za-z0-9_][A-Za-z0-9_.-]*)=(?P<v>[^=<>!~,|\s*]+)=(?P<b>\S+)",
        spec,
    )
    return f"{m['head']} {m['v']} {m['b']}" if m else spec


def commands(
    channels: list[str], name: str | None, cuda: str, tool: str | None = None
) -> list[str]:
    """The header lines that say how each stock tool builds the file (``THIS_FILE``), with the
    exact flags each needs to use the file's channels, and only those, in strict priority."""
    n = "" if name else " -n NAME"
    listed = [c for c in channels if c != "nodefaults"]
    only = " ".join(f"-c {c}" for c in listed)
    conda_env = f"  CONDA_CHANNEL_PRIORITY=strict conda env create{n} -f THIS_FILE"
    conda_only = (
        f"  CONDA_CHANNEL_PRIORITY=strict conda create{n} --file THIS_FILE "
        f"--override-channels {only}"
    )
    mamba = f"  micromamba create{n} -f THIS_FILE --strict-channel-priority"
    lock = "  conda-lock lock -f THIS_FILE -p linux-64   (docs/tools.md: its PyPI name mapping)"
    override = (
        f"On a host without a GPU driver (a build or login node) set CONDA_OVERRIDE_CUDA={cuda}"
    )
    if tool == "micromamba":
        return [
            "Written for micromamba / mamba 2: `nodefaults` keeps your .condarc channels out.",
            "Channels are in priority order; build it with",
            mamba,
            "(conda 26.7 reads `nodefaults` as a channel: for conda write it with --for conda)",
            f"{override} first.",
        ]
    if tool == "conda":
        return [
            "Written for conda. Channels are in priority order; build it with only these channels:",
            conda_only,
            "or with `conda env create`, which also searches your .condarc channels after these:",
            conda_env,
            f"{override} first.",
        ]
    return [
        "Channels are in priority order; build it with any of",
        conda_env,
        f"{mamba} --override-channels",
        lock,
        "conda env create also searches your .condarc channels after these; only these:",
        conda_only,
        f"{override} first.",
    ]


def from_selection(sel: Selection, name: str | None, tool: str | None = None) -> EnvSpec:
    """The EnvSpec for a selection, in the form every stock tool reads the same way (``tool``:
    the form that one tool reads best, see :data:`TOOLS`; pixi's manifest is written by
    ``exports.pixi`` from this spec).

    Exact pins are written ``name VER BUILD`` (:func:`portable_spec`). conda's Python
    distributions (torch, xformers, triton) are pinned for pip by ``name==version`` lines at the
    top of the ``pip:`` section: conda and micromamba run that section as ``pip install -r``,
    where an installed distribution satisfies its pin and no companion can replace it, and
    conda-lock takes them as pins too (a ``-c constraints.txt`` line would be refused by
    conda-lock). :func:`read` takes those lines back as constraints."""
    if tool is not None and tool not in TOOLS:
        raise ValueError(tool)
    p = sel.profile
    conda: list[Dep] = []
    for c in sel.conda_choices():
        if c.name == "python":
            conda.append(Dep(f"python={c.version}", c.why))
            continue
        qual = f"{c.channel}::" if c.channel and c.name in ("pytorch", "xformers") else ""
        if c.build:
            conda.append(Dep(f"{qual}{c.name} {c.version} {c.build}", c.why))
        elif c.version:
            conda.append(Dep(f"{qual}{c.name}={c.version}", c.why))
        else:
            conda.append(Dep(f"{qual}{c.name}", c.why))
    for extra in p.extra_specs:
        conda.append(Dep(portable_spec(extra.spec), extra.why))
    conda.append(Dep("pip", "runs the pip stage below"))
    constraints = [
        Dep(f"torch=={sel.pytorch.version}", "conda's pytorch: pinned so pip never replaces it"),
        Dep(f"xformers=={sel.xformers.version}", "conda's xformers build for this exact torch"),
        Dep(f"triton=={sel.pytorch.triton}", f"conda's {p.triton_package}, pinned by pytorch"),
    ]
    pip = [Dep(f"{c.name}=={c.version}", c.why) for c in sel.pip_choices()]
    channels = [*p.channels, "nodefaults"] if tool == "micromamba" else list(p.channels)
    header = [
        f"Unsloth GPU environment, profile {p.name}: CUDA {sel.cuda}, python {sel.python}, "
        f"pytorch {sel.pytorch.version}, xformers {sel.xformers.version}, "
        f"unsloth {sel.unsloth.version}.",
        "Generated by conda-unsloth.",
        *commands(channels, name, sel.cuda, tool),
    ]
    return EnvSpec(
        name=name,
        channels=channels,
        conda=conda,
        pip=pip,
        pip_constraints=constraints,
        header=header,
    )


def _spec_width(deps: list[Dep]) -> int:
    """Each "why" starts two columns after the longest spec (both writers)."""
    return max(len(d.spec) for d in deps) + 2


def pip_section(spec: EnvSpec) -> list[Dep]:
    """The ``pip:`` lines of ``spec``'s file: conda's pins (``spec.pip_constraints``, as
    ``name==version`` requirements every tool reads) then the pip requirements; a spec read
    from a file with a ``-c FILE`` line keeps that line instead of the pins."""
    if any(d.spec.startswith("-c ") for d in spec.pip):
        return list(spec.pip)
    return [*spec.pip_constraints, *spec.pip]


def to_yaml(spec: EnvSpec) -> str:
    """environment.yml text for ``spec``: ruamel's round-trip dumper in conda's style."""
    import io

    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap()
    if spec.name:
        doc["name"] = spec.name
    channels = CommentedSeq(spec.channels)
    doc["channels"] = channels
    deps = CommentedSeq()
    column = 4 + _spec_width(spec.conda)
    for i, d in enumerate(spec.conda):
        deps.append(d.spec)
        if d.why:
            deps.yaml_add_eol_comment(f"# {d.why}", i, column=column)
    pip_lines = pip_section(spec)
    if pip_lines:
        pip_seq = CommentedSeq()
        pip_column = 8 + _spec_width(pip_lines)
        for i, d in enumerate(pip_lines):
            pip_seq.append(d.spec)
            if d.why:
                pip_seq.yaml_add_eol_comment(f"# {d.why}", i, column=pip_column)
        pip_map = CommentedMap()
        pip_map["pip"] = pip_seq
        deps.append(pip_map)
    doc["dependencies"] = deps
    if spec.variables:
        doc["variables"] = CommentedMap(spec.variables)
    if spec.header:
        doc.yaml_set_start_comment("\n".join(spec.header))
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def constraints_text(spec: EnvSpec) -> str:
    """conda's pins as a pip constraints file (``pip install -c FILE`` into the env later keeps
    them; ``conda unsloth env --json`` shows it)."""
    lines = [
        "# pip constraints generated by conda-unsloth: every Python distribution conda provides,",
        "# pinned to conda's version, so the pip stage can never replace or duplicate them.",
    ]
    for d in spec.pip_constraints:
        lines.append(f"{d.spec}  # {d.why}" if d.why else d.spec)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- writing
# The file policy (checks, atomic writes, dry runs) lives in ``outputs``.


def write_files(
    spec: EnvSpec,
    env_file: str | os.PathLike[str],
    *,
    force: bool = True,
    dry_run: bool = False,
) -> list[str]:
    """Write the environment.yml through the one output policy (``outputs.write_all``): checked
    first (a file conda-unsloth did not write is refused unless ``force``; the default True is
    for callers that checked that themselves), written by an atomic rename. With ``dry_run``
    it is checked and nothing is written. The file is self-contained: conda's pins for pip are
    in its ``pip:`` section (:func:`pip_section`), no second file."""
    from .outputs import OutputFile, refuse_control, write_all

    if spec.name:
        refuse_control(spec.name, "environment name")
    env_out = OutputFile.of(env_file, "-o", force=force, example="environment.yml").check()
    written = write_all([(env_out, to_yaml(spec))], dry_run=dry_run)
    return [os.fspath(env_file)] if written else []


# ----------------------------------------------------------------------------- reading

_SPEC_RE = r"^[A-Za-z0-9_.\-:/*<>=!,~\[\] ]+$"  # compiled when a file is read, not on import
_SHOWN = 80  # characters of a bad line quoted in an error


def _quoted(line: str) -> str:
    return repr(line if len(line) <= _SHOWN else line[: _SHOWN - 3] + "...")


# name==version with a plain PEP 440 version, nothing else: packaging parses every string this
# matches to exactly (name, version) (tests/solvers/test_rattler.py and tests/test_spec.py check it against packaging)
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)[ \t]*==[ \t]*"
    r"(?P<version>[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?"
    r"(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?)",
    re.ASCII,
)


@functools.lru_cache(maxsize=256)
def pip_pin(requirement: str) -> tuple[str, str] | None:
    """``(name, version)`` when ``requirement`` is exactly ``name==version`` (no extras, no
    marker, no URL, no wildcard), else None. The pins a plan writes are read without
    importing packaging (15 ms of a solve); anything else is parsed by packaging."""
    text = requirement.strip()
    m = _PIN.fullmatch(text)
    if m:
        return m["name"], m["version"]
    if "==" not in text or "===" in text:
        return None  # not a single == specifier, whatever else it is
    return _pip_pin_packaging(text)


def _pip_pin_packaging(text: str) -> tuple[str, str] | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if req.extras or req.marker is not None or req.url or len(specs) != 1:
        return None
    (only,) = specs
    if only.operator != "==" or only.version.endswith("*"):
        return None
    return req.name, only.version


def parse_pip_requirement(text: str, where: str) -> str:
    """The canonical one-line form (``str(packaging.requirements.Requirement)``) of the pip
    requirement ``text``, read from a file: a name with extras, a version specifier or
    ``name @ URL`` (a ``#sha256=`` fragment carries a hash), and an environment marker. Anything
    else never reaches pip: an option (``--log=FILE``, ``-e``, ``-r other.txt``,
    ``--index-url``), a path, or a line with control characters is a SpecError that names
    ``where`` ("environment file X: pip[2]") and the line."""
    from .outputs import control_char

    line = text.strip()
    bad = control_char(line)
    if bad is not None:
        raise SpecError(f"{where}: pip requirement {_quoted(line)} contains {bad}")
    if not line:
        raise SpecError(f"{where}: an empty pip requirement")
    if line.startswith("-"):
        option = line.split()[0].split("=", 1)[0]
        raise SpecError(
            f"{where}: pip option {option!r} is not allowed here ({_quoted(line)}); "
            "list requirements only (name, version, or name @ URL)",
            hints=["index URLs go on the command line: --pip-index-url / --pip-find-links"],
        )
    pin = _PIN.fullmatch(line)
    if pin:  # name==version, what a plan writes: packaging would write it back as it is
        return f"{pin['name']}=={pin['version']}"
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(line)
    except InvalidRequirement:
        hints = ["a hash goes into the URL: NAME @ URL#sha256=HEX"] if "--hash" in line else []
        raise SpecError(
            f"{where}: {_quoted(line)} is not a pip requirement "
            "(name, version, or name @ URL; no options, no paths)",
            hints=hints,
        ) from None
    return str(req)


def read(path: Path) -> EnvSpec:
    """Parse an environment.yml (ours or anyone's) into an EnvSpec; SpecError on any problem.
    The file is read with the bounded reader (``userfiles``), aliases are bounded
    (``yamlload``), and every pip line becomes a validated requirement
    (:func:`parse_pip_requirement`)."""
    from . import userfiles
    from .outputs import control_char
    from .yamlload import YamlSyntaxError, load

    raw = userfiles.read_text(path, "environment file", limit=MAX_ENV_FILE_BYTES)
    where = f"environment file {path}"
    try:
        data = load(raw, typ="rt")
    except YamlSyntaxError as exc:
        raise SpecError(f"{where}: {exc.detail}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping with 'dependencies'")
    unknown = [k for k in data if k not in KNOWN_KEYS]
    if unknown:
        raise SpecError(
            f"{where}: unknown key {_quoted(str(unknown[0]))} "
            f"(an environment.yml has {', '.join(KNOWN_KEYS)})"
        )
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{where}: 'name' must be a string")
    if name is not None and control_char(name) is not None:
        raise SpecError(f"{where}: 'name' {_quoted(name)} contains {control_char(name)}")
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise SpecError(f"{where}: 'channels' must be a list of strings")
    for c in channels:
        if control_char(c) is not None or not c.strip():
            raise SpecError(f"{where}: channel {_quoted(c)} is not a channel name or URL")
    deps = data.get("dependencies")
    if not isinstance(deps, list) or not deps:
        raise SpecError(f"{where}: 'dependencies' must be a non-empty list")
    conda: list[Dep] = []
    pip: list[Dep] = []
    constraints: list[Dep] = []
    for i, d in enumerate(deps):
        if isinstance(d, str):
            if not re.match(_SPEC_RE, d):
                raise SpecError(f"{where}: dependencies[{i}] {_quoted(d)} is not a package spec")
            conda.append(Dep(d))
        elif isinstance(d, dict) and list(d) == ["pip"] and isinstance(d["pip"], list):
            for j, p in enumerate(d["pip"]):
                if not isinstance(p, str):
                    raise SpecError(f"{where}: pip[{j}] must be a string")
                option = p.strip()
                if option.startswith("-c ") and control_char(option) is None:
                    pip.append(Dep(option))
                    constraints += _read_constraints(path, option[3:].strip(), where)
                else:
                    pip.append(Dep(parse_pip_requirement(p, f"{where}: pip[{j}]")))
        else:
            raise SpecError(f"{where}: dependencies[{i}] must be a spec string or a 'pip:' list")
    pip, constraints = _conda_pins(conda, pip, constraints)
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise SpecError(f"{where}: 'variables' must be a mapping")
    for k, v in variables.items():
        if not isinstance(k, str) or not k or "=" in k or control_char(k) is not None:
            raise SpecError(f"{where}: variable name {_quoted(str(k))} is not a valid name")
        if isinstance(v, (list, dict)) or v is None:
            raise SpecError(f"{where}: variables.{k} must be a string or a number")
        if control_char(str(v)) is not None:
            raise SpecError(f"{where}: variables.{k} contains {control_char(str(v))}")
    return EnvSpec(
        name=name,
        channels=list(channels),
        conda=conda,
        pip=pip,
        pip_constraints=constraints,
        variables={str(k): str(v) for k, v in variables.items()},
    )


def _read_constraints(env_file: Path, name: str, where: str) -> list[Dep]:
    """The requirements of a ``-c FILE`` pip constraints file (relative to ``env_file``), each
    one validated like a requirement."""
    from . import userfiles

    cfile = (env_file.parent / name).resolve()
    if not userfiles.is_regular(cfile):
        raise SpecError(f"{where}: pip constraints file {cfile} is missing or not a regular file")
    text = userfiles.read_text(cfile, "pip constraints file", limit=MAX_ENV_FILE_BYTES)
    out: list[Dep] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # pip's comment rule
        if line:
            out.append(Dep(parse_pip_requirement(line, f"pip constraints file {cfile}: line {n}")))
    return out


def _conda_pins(
    conda: list[Dep], pip: list[Dep], constraints: list[Dep]
) -> tuple[list[Dep], list[Dep]]:
    """Split conda's pins out of the pip requirements: a ``name==version`` pin of one of
    conda's Python distributions (:data:`CONDA_DISTS`: torch, triton, xformers) whose conda
    package the file lists is a constraint, never something pip installs (that is how the
    writer keeps pip from replacing them, in a form every tool reads)."""
    from .target import parse_spec

    listed = set()
    for d in conda:
        ms = parse_spec(d.spec)
        if ms is not None:
            listed.add(ms.name)
    requirements: list[Dep] = []
    pins = list(constraints)
    for d in pip:
        name, sep, version = d.spec.partition("==")
        packages = CONDA_DISTS.get(name.strip().lower(), ())
        if sep and version and not any(c in version for c in ",;@ ") and listed & set(packages):
            pins.append(d)
        else:
            requirements.append(d)
    return requirements, pins
