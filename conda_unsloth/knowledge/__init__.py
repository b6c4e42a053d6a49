"""The compatibility knowledge base: versioned YAML data (one source per row) and its loader.

The loader validates shape *and* consistency (a default CUDA that no pytorch build has, an
xformers row pinned to a pytorch the profile does not list, companions outside their unsloth's
ranges, a version written as a YAML float, a stack it allows that one of its own known issues
matches, ...). Any problem is a ``KnowledgeError`` naming the file and the row.

What a plan needs is computed here, once, and kept with the data in the on-disk cache: the
answers to selection's PEP 440 questions (``Knowledge.satisfies``), so that a plan imports
neither ``packaging`` nor the rules.
"""

from __future__ import annotations

import functools
import os
import re

from ..errors import KnowledgeError
from ..record import field, record

TYPE_CHECKING = False  # typing costs 3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any, NoReturn

KNOWLEDGE_ENV = "CONDA_UNSLOTH_KNOWLEDGE"
FILES = ("compat.yaml", "unsloth.yaml", "known_issues.yaml")
SUPPORTED_SCHEMA = 1
RULE_KINDS = frozenset(
    {
        "version_in",
        "xformers_torch_mismatch",
        "runtime",
        "cpu_pytorch",
        "cuda_newer_than_driver",
        "arch_not_covered",
        "blackwell_old_xformers",
        "mkl_too_new",
        "bnb_missing_cuda",
        "duplicate_torch",
        "mixed_providers",
        "python_xformers_channel",
        "xformers_newer_than_torch",
        "glibc_too_old",
        "cuda_major_mismatch",
        "unsloth_requirements",
    }
)


def default_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


@record(frozen=True)
class ExtraSpec:
    spec: str
    why: str
    source: str


@record(frozen=True)
class PytorchBuild:
    version: str
    cuda: tuple[str, ...]
    python: tuple[str, ...]
    triton: str
    source: str


@record(frozen=True)
class XformersBuild:
    version: str
    pytorch: str  # an exact version (pytorch channel) or a "2.10.*" series (conda-forge)
    python: tuple[str, ...]
    archs: str
    source: str
    cuda: tuple[
        str, ...
    ] = ()  # conda-forge: CUDA variants built; pytorch channel: see cuda_builds
    known_issue: str | None = None

    def matches_pytorch(self, version: str) -> bool:
        if self.pytorch.endswith(".*"):
            return version.startswith(self.pytorch[:-1])
        return version == self.pytorch


@record(frozen=True)
class Profile:
    name: str
    summary: str
    source: str
    channels: tuple[str, ...]
    cuda_package: str
    default_cuda: str
    default_python: str
    pytorch_build: str
    triton_package: str
    extra_specs: tuple[ExtraSpec, ...]
    arch_lists: dict[str, str]
    pytorch: tuple[PytorchBuild, ...]
    xformers_build: str
    xformers: tuple[XformersBuild, ...]
    xformers_cuda_builds: dict[str, str] = field(default_factory=dict)

    @property
    def cudas(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.pytorch:
            for c in row.cuda:
                seen[c] = None
        return tuple(sorted(seen, key=version_key))

    @property
    def pythons(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.pytorch:
            for p in row.python:
                seen[p] = None
        return tuple(sorted(seen, key=version_key))

    def pytorch_row(self, version: str) -> PytorchBuild | None:
        return next((r for r in self.pytorch if r.version == version), None)


@record(frozen=True)
class GpuArch:
    arch: str
    name: str
    min_cuda: str
    source: str


@record(frozen=True)
class CudaDriver:
    cuda: str
    min_driver: str
    family_floor: str
    source: str


@record(frozen=True)
class XformersWheel:
    version: str
    torch: str
    build_torch: str
    cuda: int
    source: str


@record(frozen=True)
class BnbWheel:
    version: str
    cuda: tuple[int, ...]
    torch: str
    python: str
    source: str


@record(frozen=True)
class UnslothRelease:
    version: str
    python: str
    requires: dict[str, str]
    companions: dict[str, str]
    profiles: tuple[str, ...]
    resolved_with: str
    source: str
    companion_python: tuple[str, ...] = ()


@record(frozen=True)
class KnownIssue:
    id: str
    title: str
    symptom: str
    severity: str
    scope: str
    check: dict[str, Any]
    fix: str
    fix_commands: tuple[str, ...]
    source: str


@record(frozen=True)
class Knowledge:
    directory: str
    revision: str
    cuda_drivers: tuple[CudaDriver, ...]
    gpu_archs: dict[str, GpuArch]
    profiles: dict[str, Profile]
    xformers_pypi: tuple[XformersWheel, ...]
    bnb_pypi: tuple[BnbWheel, ...]
    releases: tuple[UnslothRelease, ...]
    default_release: dict[str, str]
    issues: dict[str, KnownIssue]
    # (specifier set, version) -> PEP 440 answer, for the specifiers of the releases and the
    # versions the profiles build: computed once at load, so a plan needs no `packaging`
    specifier_table: dict[tuple[str, str], bool] = field(default_factory=dict)

    def satisfies(self, version: str, spec: str) -> bool:
        """Is ``version`` in the PEP 440 specifier set ``spec`` ('' allows any version)?"""
        known = self.specifier_table.get((spec, version))
        return known if known is not None else pep440_contains(version, spec)

    def release(self, version: str) -> UnslothRelease | None:
        return next((r for r in self.releases if r.version == version), None)

    def driver(self, cuda: str) -> CudaDriver | None:
        return next((d for d in self.cuda_drivers if d.cuda == cuda), None)

    def xformers_wheel(self, version: str) -> XformersWheel | None:
        return next((w for w in self.xformers_pypi if w.version == version), None)

    def bnb_wheel(self, version: str) -> BnbWheel | None:
        return next((w for w in self.bnb_pypi if w.version == version), None)


@functools.lru_cache(maxsize=4096)
def version_key(v: str) -> tuple[int, ...]:
    """Sort key for dotted numeric versions like '12.1' or '3.10' (not PEP 440 in general)."""
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def pep440_contains(version: str, spec: str) -> bool:
    """``Version(version) in SpecifierSet(spec)``, with packaging imported only when asked."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return Version(version) in SpecifierSet(spec)


def parse_arch(arch: str) -> tuple[int, int] | None:
    """A compute capability '8.9' as (8, 9); None when it is not one."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", arch)
    return (int(m.group(1)), int(m.group(2))) if m else None


def arch_covered(arch: str, arch_list: str) -> bool:
    """Is compute capability ``arch`` ('8.9') served by a TORCH_CUDA_ARCH_LIST string?

    SASS for X.y runs on X.z with z >= y (same major); PTX for A runs on any arch >= A.
    """
    parsed = parse_arch(arch)
    if parsed is None:
        return True  # not a compute capability: unknown, nothing to report
    major, minor = parsed
    for entry in arch_list.split():
        ptx = entry.endswith("+PTX")
        base = entry.removesuffix("+PTX")
        arch_specific = base.endswith(("a", "f"))  # sm_90a: runs on exactly sm_90
        emaj, emin = (int(x) for x in base.rstrip("af").split("."))
        if arch_specific:
            if (emaj, emin) == (major, minor):
                return True
            continue
        if emaj == major and emin <= minor:
            return True
        if ptx and (emaj, emin) <= (major, minor):
            return True
    return False


# ----------------------------------------------------------------------------- parsing


class _Row:
    """Typed access to one mapping of a knowledge file, with errors that name file and row."""

    def __init__(self, data: Any, file: str, where: str) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, why: str) -> NoReturn:
        raise KnowledgeError(
            f"knowledge file {self.file}: {self.where}: {why}",
            hints=[
                f"fix the row in {self.file}, or unset {KNOWLEDGE_ENV} to use the bundled files",
            ],
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, *, optional: bool = False, default: str = "") -> str:
        if key not in self.data:
            if optional:
                return default
            self.fail(f"missing key '{key}'")
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str):
            if isinstance(value, float):
                self.fail(
                    f"'{key}' is the number {value!r}; write versions as quoted strings "
                    f"(e.g. '{value}') so 12.10 does not become 12.1"
                )
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            self.fail(f"'{key}' must be a string, got {type(value).__name__}")
        if not optional and not value.strip() and key in ("source", "version"):
            self.fail(f"'{key}' is empty")
        return str(value)

    def texts(self, key: str, *, optional: bool = False) -> tuple[str, ...]:
        if key not in self.data:
            if optional:
                return ()
            self.fail(f"missing key '{key}'")
        value = self.data[key]
        if not isinstance(value, list):
            self.fail(f"'{key}' must be a list")
        out = []
        for item in value:
            if isinstance(item, float):
                self.fail(f"'{key}' holds the number {item!r}; quote versions ('{item}')")
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                self.fail(f"'{key}' must hold strings")
            out.append(str(item))
        return tuple(out)

    def ints(self, key: str) -> tuple[int, ...]:
        value = self.data.get(key)
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            self.fail(f"'{key}' must be a list of integers")
        return tuple(value)

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"'{key}' must be an integer")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self.fail(f"'{key}' must be a mapping")
        return value

    def rows(self, key: str) -> list[_Row]:
        value = self.data.get(key)
        if not isinstance(value, list):
            self.fail(f"'{key}' must be a list")
        out = []
        for i, item in enumerate(value):
            label = ""
            if isinstance(item, dict):
                ident = item.get("version") or item.get("id") or item.get("cuda") or ""
                label = f" ({ident})" if ident else ""
            out.append(_Row(item, self.file, f"{self.where}{key}[{i}]{label}"))
        return out

    def source(self) -> str:
        src = self.text("source")
        if not src.strip():
            self.fail("'source' is empty: every row needs a source")
        return src


def _read(directory: str, name: str) -> _Row:
    from ..yamlload import YamlSyntaxError, load

    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise KnowledgeError(
            f"knowledge file {path} is missing",
            hints=[f"point {KNOWLEDGE_ENV} at a directory holding {', '.join(FILES)}"],
        ) from None
    except OSError as exc:
        raise KnowledgeError(f"knowledge file {path} cannot be read: {exc.strerror}") from None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(
            f"knowledge file {name}: not UTF-8 (byte {exc.start})", hints=[]
        ) from None
    try:
        data = load(decoded)
    except YamlSyntaxError as exc:
        raise KnowledgeError(f"knowledge file {name}: {exc.detail}") from None
    row = _Row(data, name, "")
    schema = row.integer("schema_version")
    if schema != SUPPORTED_SCHEMA:
        row.fail(f"schema_version {schema} is not supported (this tool reads {SUPPORTED_SCHEMA})")
    return row


def _profile(name: str, r: _Row) -> Profile:
    prefix = r.where
    extra = tuple(
        ExtraSpec(spec=e.text("spec"), why=e.text("why"), source=e.source())
        for e in r.rows("extra_specs")
    )
    arch_lists = {}
    for a in r.rows("arch_lists"):
        arch_lists[a.text("cuda")] = a.text("archs")
        a.source()
    pytorch = tuple(
        PytorchBuild(
            version=p.text("version"),
            cuda=p.texts("cuda"),
            python=p.texts("python"),
            triton=p.text("triton"),
            source=p.source(),
        )
        for p in r.rows("pytorch")
    )
    xformers = tuple(
        XformersBuild(
            version=x.text("version"),
            pytorch=x.text("pytorch"),
            python=x.texts("python"),
            archs=x.text("archs"),
            cuda=x.texts("cuda", optional=True),
            known_issue=x.text("known_issue", optional=True) or None,
            source=x.source(),
        )
        for x in r.rows("xformers")
    )
    cuda_builds = {}
    if r.has("xformers_cuda_builds"):
        for b in r.rows("xformers_cuda_builds"):
            cuda_builds[b.text("cuda")] = b.text("build")
            b.source()
    profile = Profile(
        name=name,
        summary=r.text("summary"),
        source=r.source(),
        channels=r.texts("channels"),
        cuda_package=r.text("cuda_package"),
        default_cuda=r.text("default_cuda"),
        default_python=r.text("default_python"),
        pytorch_build=r.text("pytorch_build"),
        triton_package=r.text("triton_package"),
        extra_specs=extra,
        arch_lists=arch_lists,
        pytorch=pytorch,
        xformers_build=r.text("xformers_build"),
        xformers=xformers,
        xformers_cuda_builds=cuda_builds,
    )
    # consistency
    if not profile.channels:
        r.fail("'channels' is empty")
    if profile.default_cuda not in profile.cudas:
        r.fail(f"default_cuda {profile.default_cuda} is not built by any pytorch row")
    if profile.default_python not in profile.pythons:
        r.fail(f"default_python {profile.default_python} is not built by any pytorch row")
    versions = [p.version for p in pytorch]
    if len(set(versions)) != len(versions):
        r.fail("a pytorch version is listed twice")
    for i, p in enumerate(pytorch):
        for c in p.cuda:
            if c not in arch_lists:
                r.fail(f"pytorch[{i}] ({p.version}): cuda {c} has no arch_lists row")
            if cuda_builds and c not in cuda_builds:
                r.fail(f"pytorch[{i}] ({p.version}): cuda {c} has no xformers_cuda_builds row")
    for i, x in enumerate(xformers):
        if not any(x.matches_pytorch(v) for v in versions) and x.known_issue is None:
            r.fail(
                f"{prefix}xformers[{i}] ({x.version}): pinned to pytorch {x.pytorch}, "
                "which no pytorch row of this profile provides"
            )
    return profile


def _load(directory: str) -> Knowledge:
    d = directory
    compat = _read(d, "compat.yaml")
    unsloth = _read(d, "unsloth.yaml")
    issues_file = _read(d, "known_issues.yaml")

    drivers = tuple(
        CudaDriver(
            cuda=r.text("cuda"),
            min_driver=r.text("min_driver"),
            family_floor=r.text("family_floor"),
            source=r.source(),
        )
        for r in compat.rows("cuda_drivers")
    )
    archs = {}
    for r in compat.rows("gpu_archs"):
        arch = r.text("arch")
        archs[arch] = GpuArch(arch, r.text("name"), r.text("min_cuda"), r.source())
    profiles_map = compat.mapping("profiles")
    if not profiles_map:
        compat.fail("'profiles' is empty")
    profiles = {
        name: _profile(name, _Row(body, "compat.yaml", f"profiles.{name}."))
        for name, body in profiles_map.items()
    }
    for p in profiles.values():
        for c in p.cudas:
            if not any(dr.cuda == c for dr in drivers):
                compat.fail(f"profiles.{p.name}: cuda {c} has no cuda_drivers row")
    xf = tuple(
        XformersWheel(
            version=r.text("version"),
            torch=r.text("torch"),
            build_torch=r.text("build_torch"),
            cuda=r.integer("cuda"),
            source=r.source(),
        )
        for r in compat.rows("xformers_pypi")
    )
    bnb = tuple(
        BnbWheel(
            version=r.text("version"),
            cuda=r.ints("cuda"),
            torch=r.text("torch", optional=True),
            python=r.text("python", optional=True),
            source=r.source(),
        )
        for r in compat.rows("bitsandbytes_pypi")
    )

    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    releases = []
    for r in unsloth.rows("releases"):
        requires_raw = r.mapping("requires")
        requires = {}
        for k, v in requires_raw.items():
            if v is None:
                v = ""
            if not isinstance(v, str):
                r.fail(f"requires.{k} must be a quoted specifier string")
            try:
                SpecifierSet(v)
            except InvalidSpecifier:
                r.fail(f"requires.{k}: '{v}' is not a valid version specifier")
            requires[str(k)] = v
        companions = {}
        for k, v in r.mapping("companions").items():
            if isinstance(v, float):
                r.fail(f"companions.{k} is the number {v!r}; quote it")
            companions[str(k)] = str(v)
        rel = UnslothRelease(
            version=r.text("version"),
            python=r.text("python"),
            requires=requires,
            companions=companions,
            profiles=r.texts("profiles"),
            resolved_with=r.text("resolved_with"),
            source=r.source(),
            companion_python=r.texts("companion_python", optional=True),
        )
        for prof in rel.profiles:
            if prof not in profiles:
                r.fail(f"profile '{prof}' does not exist in compat.yaml")
        for name, pin in rel.companions.items():
            try:
                ver = Version(pin)
            except InvalidVersion:
                r.fail(f"companions.{name}: '{pin}' is not a version")
            spec = requires.get(name)
            if spec is None:
                continue
            if ver not in SpecifierSet(spec):
                r.fail(
                    f"companion {name}=={pin} violates this release's own requirement "
                    f"{name}{spec} (contradictory row)"
                )
        releases.append(rel)
    defaults_map = unsloth.mapping("defaults")
    default_release = {str(k): str(v) for k, v in defaults_map.items()}
    for prof, default_ver in default_release.items():
        if prof not in profiles:
            unsloth.fail(f"defaults: profile '{prof}' does not exist")
        rel_row = next((x for x in releases if x.version == default_ver), None)
        if rel_row is None:
            unsloth.fail(f"defaults.{prof}: release {default_ver} is not listed")
        elif prof not in rel_row.profiles:
            unsloth.fail(f"defaults.{prof}: release {default_ver} does not list profile {prof}")
    for prof in profiles:
        if prof not in default_release:
            unsloth.fail(f"defaults: no default release for profile '{prof}'")

    issues: dict[str, KnownIssue] = {}
    for r in issues_file.rows("issues"):
        check = r.mapping("check")
        kind = check.get("kind")
        if kind not in RULE_KINDS:
            r.fail(
                f"check.kind '{kind}' is not a rule this tool knows ({', '.join(sorted(RULE_KINDS))})"
            )
        severity = r.text("severity")
        if severity not in ("error", "warning", "info"):
            r.fail(f"severity '{severity}' must be error, warning or info")
        scope = r.text("scope")
        if scope not in ("packages", "host", "runtime"):
            r.fail(f"scope '{scope}' must be packages, host or runtime")
        issue = KnownIssue(
            id=r.text("id"),
            title=r.text("title"),
            symptom=r.text("symptom"),
            severity=severity,
            scope=scope,
            check=dict(check),
            fix=r.text("fix"),
            fix_commands=r.texts("fix_commands"),
            source=r.source(),
        )
        if issue.id in issues:
            r.fail(f"issue id {issue.id} is listed twice")
        issues[issue.id] = issue
    for p in profiles.values():
        for x in p.xformers:
            if x.known_issue and x.known_issue not in issues:
                compat.fail(
                    f"profiles.{p.name}.xformers ({x.version}): known_issue {x.known_issue} "
                    "is not in known_issues.yaml"
                )
    kb = Knowledge(
        directory=d,
        revision=f"{compat.text('revision')}/{unsloth.text('revision')}/{issues_file.text('revision')}",
        cuda_drivers=drivers,
        gpu_archs=archs,
        profiles=profiles,
        xformers_pypi=xf,
        bnb_pypi=bnb,
        releases=tuple(releases),
        default_release=default_release,
        issues=issues,
        specifier_table=_specifier_table(profiles, releases),
    )
    from ..select import knowledge_conflicts

    conflicts = knowledge_conflicts(kb)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise KnowledgeError(
            f"knowledge file known_issues.yaml: known issue {conflicts[0]}, a stack that "
            f"compat.yaml and unsloth.yaml allow{more}",
            hints=[
                "fix the rows in compat.yaml, unsloth.yaml or known_issues.yaml, or unset "
                f"{KNOWLEDGE_ENV} to use the bundled files"
            ],
        )
    return kb


def _specifier_table(
    profiles: dict[str, Profile], releases: list[UnslothRelease]
) -> dict[tuple[str, str], bool]:
    """What selection asks of PEP 440, answered now: each release's python specifier against
    every python the profiles build, its torch and xformers specifiers against every pytorch
    and xformers version they list (through :func:`pep440_contains`, the one place the question
    is written)."""
    domain = {
        "python": {py for p in profiles.values() for row in p.pytorch for py in row.python},
        "torch": {row.version for p in profiles.values() for row in p.pytorch},
        "xformers": {x.version for p in profiles.values() for x in p.xformers},
    }
    table: dict[tuple[str, str], bool] = {}
    for rel in releases:
        specs = {"python": rel.python, **rel.requires}
        for name, versions in domain.items():
            spec = specs.get(name, "")
            for v in versions:
                table[(spec, v)] = pep440_contains(v, spec)
    return table


def load(directory: str | os.PathLike[str] | None = None) -> Knowledge:
    """Load and validate the knowledge base (cached per directory).

    ``directory`` defaults to ``$CONDA_UNSLOTH_KNOWLEDGE`` or the bundled files. The validated
    result is also kept on disk (a pickle in the user cache, keyed by checksums of the files'
    contents and this tool's version): parsing YAML is most of a plan's run time, the data
    rarely changes.
    """
    if directory is None:
        directory = os.environ.get(KNOWLEDGE_ENV) or default_dir()
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise KnowledgeError(
            f"knowledge directory {path} does not exist",
            hints=[f"unset {KNOWLEDGE_ENV} to use the bundled knowledge base"],
        )
    return _load_cached(os.path.realpath(path))


_MEMO: dict[str, Knowledge] = {}


def _load_cached(directory: str) -> Knowledge:
    try:  # pickle's C half reads what pickle writes; pickle.py itself costs 1.2 ms more to import
        from _pickle import load as unpickle
    except ImportError:  # an interpreter without the accelerator
        from pickle import load as unpickle
    import zlib  # not hashlib: loading OpenSSL costs 2.5 ms, a quarter of a plan's run

    from .. import __version__

    data = [f"{__version__}/{SUPPORTED_SCHEMA}/{directory}".encode()]
    # the code that shapes and checks the data (this loader, selection, the rules), then the data
    code = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = [os.path.join(code, f) for f in ("knowledge/__init__.py", "select.py", "rules.py")]
    try:
        for path in (*sources, *(os.path.join(directory, name) for name in FILES)):
            with open(path, "rb") as fh:
                data.append(fh.read())
    except OSError:
        return _load(directory)  # _load reports the missing or unreadable file
    blob = b"\0".join(data)
    key = f"{zlib.crc32(blob):08x}{zlib.adler32(blob):08x}{len(blob):x}"
    if key in _MEMO:
        return _MEMO[key]
    cache_file = os.path.join(_cache_dir(), f"{key}.pickle")
    try:
        with open(cache_file, "rb") as fh:
            kb = unpickle(fh)
        if isinstance(kb, Knowledge):
            _MEMO[key] = kb
            return kb
    except Exception:  # a missing, unreadable or stale cache only costs a parse
        pass
    kb = _load(directory)
    import pickle

    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file[: -len('.pickle')]}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(kb, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache is fine
    _MEMO[key] = kb
    return kb


def _cache_dir() -> str:
    env = os.environ.get("CONDA_UNSLOTH_CACHE")
    if env:
        return os.path.join(env, "knowledge")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "conda-unsloth", "knowledge")
