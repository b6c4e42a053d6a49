"""Reading and checking the knowledge files: typed access to each row with errors that name
the file and the row, consistency checks across files, and the bundle (the checked data of the
bundled files as JSON, so that a plan does not parse YAML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import KnowledgeError
from .model import (
    BNB_LOADERS,
    EVIDENCE_STATUSES,
    BnbWheel,
    CudaDriver,
    Evidence,
    ExtraSpec,
    ExtraXformersBuild,
    GpuArch,
    Knowledge,
    KnownIssue,
    Profile,
    PythonRequirement,
    PytorchBuild,
    UnslothRelease,
    XformersBuild,
    XformersWheel,
    parse_arch,
    pep440_contains,
    version_key,
)
from .rows import FILES, KNOWLEDGE_ENV, _file, _Row, read_yaml

BUNDLE = "bundle.json"

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
        "triton_mismatch",
        "create_failed",
        "verification_failed",
    }
)
# issue scopes: `packages` rules run on a plan, a solve or an installed env; `host` rules also
# need the GPU/driver facts; `env` rules read what conda-unsloth recorded in the env (its
# marker); `runtime` ones are only observable by running code
SCOPES = ("packages", "host", "env", "runtime")


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
    xformers = tuple(_xformers_row(x) for x in r.rows("xformers"))
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


def _check_arch_lists(compat: _Row, profiles: dict[str, Profile]) -> None:
    """Every entry of every arch list (torch's and xformers') is a compute capability, with
    an optional a/f suffix and +PTX."""
    for p in profiles.values():
        lists = [(f"arch_lists ({c})", a) for c, a in p.arch_lists.items()]
        for x in p.xformers:
            lists += [(f"xformers ({x.version})", x.archs)]
            lists += [(f"xformers ({x.version}, CUDA {c})", a) for c, a in x.archs_by_cuda]
        for where, archs in lists:
            if not archs.split():
                compat.fail(f"profiles.{p.name}.{where}: the arch list is empty")
            for arch in archs.split():
                if parse_arch(arch.removesuffix("+PTX").rstrip("af")) is None:
                    compat.fail(f"profiles.{p.name}.{where}: '{arch}' is not an arch")


def _xformers_row(x: _Row) -> XformersBuild:
    archs_by_cuda: tuple[tuple[str, str], ...] = ()
    raw = x.data.get("archs")
    if isinstance(raw, dict):
        # per CUDA of the build: {'11.8': '...', '12.1': '...'}; `archs` is then the newest
        pairs = []
        for k, v in raw.items():
            if not isinstance(k, str) or not isinstance(v, str):
                x.fail("'archs' per CUDA must map quoted CUDA versions to arch lists")
            pairs.append((k, v))
        if not pairs:
            x.fail("'archs' is empty")
        archs_by_cuda = tuple(sorted(pairs, key=lambda kv: version_key(kv[0])))
        archs = archs_by_cuda[-1][1]
    else:
        archs = x.text("archs")
    extra = tuple(
        ExtraXformersBuild(
            pytorch=b.text("pytorch"),
            cuda=b.texts("cuda"),
            python=b.texts("python"),
            source=b.source(),
        )
        for b in (x.rows("extra_builds") if x.has("extra_builds") else [])
    )
    return XformersBuild(
        version=x.text("version"),
        pytorch=x.text("pytorch"),
        python=x.texts("python"),
        archs=archs,
        cuda=x.texts("cuda", optional=True),
        known_issue=x.text("known_issue", optional=True) or None,
        source=x.source(),
        archs_by_cuda=archs_by_cuda,
        extra_builds=extra,
    )


HostTable = dict[tuple[str, str, str, str, str], tuple[tuple[str, str], ...]]


def build(
    files: dict[str, Any],
    directory: str,
    specifier_table: dict[tuple[str, str], bool] | None = None,
    host_table: HostTable | None = None,
) -> Knowledge:
    """The Knowledge of parsed ``files`` (file name -> data). Without ``specifier_table`` (data
    someone may have edited) every row is checked against PEP 440 and every stack the data
    allows against its own known issues, and the host-scope issues of every stack on every
    known GPU arch are computed; with it (the bundle, checked when it was generated) only the
    shape is checked and ``host_table`` is the one computed then."""
    d = directory
    checked = specifier_table is not None
    compat = _file(files["compat.yaml"], "compat.yaml")
    unsloth = _file(files["unsloth.yaml"], "unsloth.yaml")
    issues_file = _file(files["known_issues.yaml"], "known_issues.yaml")
    evidence_file = _file(files["evidence.yaml"], "evidence.yaml")

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
        extra = set(r.data) - {"arch", "min_cuda", "name", "source"}
        if extra and not checked:  # e.g. an unquoted name with a comma split in a flow mapping
            r.fail(
                f"unknown key(s) {', '.join(sorted(map(str, extra)))}; quote values with commas"
            )
        arch = r.text("arch")
        if not checked and parse_arch(arch) is None:
            r.fail(f"'{arch}' is not a compute capability like 9.0")
        if arch in archs:
            r.fail(f"arch {arch} is listed twice")
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
    if not checked:
        _check_arch_lists(compat, profiles)
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
    bnb = tuple(_bnb_row(r) for r in compat.rows("bitsandbytes_pypi"))

    releases = []
    for r in unsloth.rows("releases"):
        requires_raw = r.mapping("requires")
        requires = {}
        for k, v in requires_raw.items():
            if v is None:
                v = ""
            if not isinstance(v, str):
                r.fail(f"requires.{k} must be a quoted specifier string")
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
            requires_python=tuple(
                PythonRequirement(
                    name=q.text("name"),
                    version=q.text("version"),
                    python=q.text("python"),
                    source=q.source(),
                )
                for q in r.rows("requires_python")
            ),
        )
        for prof in rel.profiles:
            if prof not in profiles:
                r.fail(f"profile '{prof}' does not exist in compat.yaml")
        if not checked:
            _check_pep440(r, rel)
            _check_requires_python(r, rel)
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
        if scope not in SCOPES:
            r.fail(f"scope '{scope}' must be {', '.join(SCOPES[:-1])} or {SCOPES[-1]}")
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
    if checked:  # the bundle's rows were checked when it was generated: read them as they are
        evidence = tuple(_evidence_checked(e) for e in evidence_file.data["records"])
    else:
        evidence = tuple(_evidence_row(r) for r in evidence_file.rows("records"))
    kb = Knowledge(
        directory=d,
        revision=f"{compat.text('revision')}/{unsloth.text('revision')}/"
        f"{issues_file.text('revision')}/{evidence_file.text('revision')}",
        cuda_drivers=drivers,
        gpu_archs=archs,
        profiles=profiles,
        xformers_pypi=xf,
        bnb_pypi=bnb,
        releases=tuple(releases),
        default_release=default_release,
        issues=issues,
        specifier_table=specifier_table or _specifier_table(profiles, releases),
        evidence=evidence,
        host_table=host_table or {},
    )
    if checked:
        return kb
    from dataclasses import replace

    from .checks import host_conflicts, knowledge_conflicts

    kb = replace(kb, host_table=host_conflicts(kb))

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
    """What selection and the checks of a solved plan ask of PEP 440, answered now: each
    release's python specifier against every python the profiles build, its torch and xformers
    specifiers against every pytorch and xformers version they list, its triton specifier
    against every triton they pin, and each other requirement against every version a release
    pins that companion to (through :func:`pep440_contains`, the one place the question is
    written)."""
    domain = {
        "python": {py for p in profiles.values() for row in p.pytorch for py in row.python},
        "torch": {row.version for p in profiles.values() for row in p.pytorch},
        "xformers": {x.version for p in profiles.values() for x in p.xformers},
        "triton": {row.triton for p in profiles.values() for row in p.pytorch if row.triton},
    }
    for rel in releases:
        for name, version in rel.companions.items():
            domain.setdefault(name, set()).add(version)
    table: dict[tuple[str, str], bool] = {}
    for rel in releases:
        specs = {"python": rel.python, **rel.requires}
        for name, versions in domain.items():
            spec = specs.get(name, "")
            for v in versions:
                table[(spec, v)] = pep440_contains(v, spec)
        for q in rel.requires_python:
            for v in domain["python"]:
                table[(q.python, v)] = pep440_contains(v, q.python)
    return table


def _bnb_row(r: _Row) -> BnbWheel:
    loader = r.text("loader")
    if loader not in BNB_LOADERS:
        r.fail(f"loader '{loader}' must be one of {', '.join(BNB_LOADERS)}")
    return BnbWheel(
        version=r.text("version"),
        cuda=r.ints("cuda"),
        torch=r.text("torch", optional=True),
        python=r.text("python", optional=True),
        source=r.source(),
        loader=loader,
        loader_source=r.text("loader_source"),
    )


def _check_requires_python(r: _Row, rel: UnslothRelease) -> None:
    """Every pin (unsloth itself and each companion) has its Requires-Python row, for exactly
    the pinned version; no python the row allows is one a pin excludes (contradictory row)."""
    rows = {q.name: q for q in rel.requires_python}
    if len(rows) != len(rel.requires_python):
        r.fail("requires_python names a distribution twice")
    pins = {"unsloth": rel.version, **rel.companions}
    for name, pin in pins.items():
        row = rows.get(name)
        if row is None:
            r.fail(f"requires_python has no row for {name}=={pin} (PyPI Requires-Python)")
        if row.version != pin:
            r.fail(
                f"requires_python row for {name} is version {row.version}, but the pin is {pin}"
            )
    for name in rows:
        if name not in pins:
            r.fail(f"requires_python row for {name}, which is not pinned by this release")
    for py in rel.companion_python:
        for q in rel.requires_python:
            if q.python and not pep440_contains(py, q.python):
                r.fail(
                    f"companion_python lists {py}, but {q.name} {q.version} requires Python "
                    f"{q.python} (contradictory row)"
                )


def _evidence_checked(e: dict[str, Any]) -> Evidence:
    return Evidence(
        name=e["name"],
        version=e["version"],
        build=e["build"],
        channel=e["channel"],
        subdir=e["subdir"],
        cuda=e["cuda"],
        python=tuple(e["python"]),
        pytorch=e.get("pytorch", ""),
        depends=tuple(e["depends"]),
        url=e.get("url", ""),
        status=e["status"],
        note=e["note"],
        source=e["source"],
    )


def _evidence_row(r: _Row) -> Evidence:
    status = r.text("status")
    if status not in EVIDENCE_STATUSES:
        r.fail(f"status '{status}' must be one of {', '.join(EVIDENCE_STATUSES)}")
    e = Evidence(
        name=r.text("name"),
        version=r.text("version"),
        build=r.text("build"),
        channel=r.text("channel"),
        subdir=r.text("subdir"),
        cuda=r.text("cuda"),
        python=r.texts("python"),
        pytorch=r.text("pytorch", optional=True),
        depends=r.texts("depends"),
        url=r.text("url", optional=True),
        status=status,
        note=r.text("note"),
        source=r.source(),
    )
    if status == "confirmed" and ("*" in e.build or not e.url):
        r.fail("a confirmed record names its exact build and url")
    if not e.python:
        r.fail("'python' is empty")
    return e


def _check_pep440(r: _Row, rel: UnslothRelease) -> None:
    """Every requirement is a PEP 440 specifier set, every companion a version inside its own
    release's range."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    for k, v in rel.requires.items():
        try:
            SpecifierSet(v)
        except InvalidSpecifier:
            r.fail(f"requires.{k}: '{v}' is not a valid version specifier")
    for name, pin in rel.companions.items():
        try:
            ver = Version(pin)
        except InvalidVersion:
            r.fail(f"companions.{name}: '{pin}' is not a version")
        spec = rel.requires.get(name)
        if spec is not None and ver not in SpecifierSet(spec):
            r.fail(
                f"companion {name}=={pin} violates this release's own requirement "
                f"{name}{spec} (contradictory row)"
            )


def load_yaml(directory: str) -> Knowledge:
    """The knowledge of the YAML files in ``directory``, fully checked."""
    return build({name: read_yaml(directory, name) for name in FILES}, directory)


def yaml_digest(directory: str) -> str:
    """CRC-32 and length of the knowledge files of ``directory`` (names and bytes): what a
    bundle was generated from. It tells a bundle left behind by an edit of the YAML (the
    bundle is no seal: it is as writable as the files); zlib is loaded already (argparse
    imports it through shutil), hashlib would cost a plan 3 ms."""
    import zlib

    crc, size = 0, 0
    for name in FILES:
        try:
            data = name.encode() + b"\0" + (Path(directory) / name).read_bytes()
        except OSError:
            data = name.encode() + b"\0\0missing"
        crc, size = zlib.crc32(data, crc), size + len(data)
    return f"crc32:{crc:08x}:{size}"


def bundle_text(directory: str) -> str:
    """The bundle of ``directory``'s files: their data, checked in full here (shape, PEP 440,
    known issues against every stack), and the PEP 440 answers a plan asks for."""
    files = {name: read_yaml(directory, name) for name in FILES}
    kb = build(files, directory)
    table = sorted([s, v, a] for (s, v), a in kb.specifier_table.items())
    host = sorted([*key, [list(hit) for hit in hits]] for key, hits in kb.host_table.items())
    doc = {
        "generated_by": "python -m conda_unsloth.knowledge --write",
        "yaml_digest": yaml_digest(directory),
        "files": files,
        "specifier_table": table,
        "host_table": host,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def load_bundle(directory: str, *, fresh_only: bool = False) -> Knowledge | None:
    """The knowledge of ``directory``'s bundle (shape checked; the rest was at generation).
    With ``fresh_only``: None when there is no bundle or it was generated from other YAML than
    the files there now (an edited copy is read from its YAML, checked in full)."""
    path = Path(directory) / BUNDLE
    if fresh_only and not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if fresh_only and doc.get("yaml_digest") != yaml_digest(directory):
            return None
        files = doc["files"]
        table = {(s, v): bool(a) for s, v, a in doc["specifier_table"]}
        host: HostTable = {
            (str(p), str(c), str(t), str(x), str(a)): tuple(
                (str(i), str(detail)) for i, detail in hits
            )
            for p, c, t, x, a, hits in doc["host_table"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KnowledgeError(
            f"knowledge bundle {path} cannot be read ({exc})",
            hints=["python -m conda_unsloth.knowledge --write regenerates it"],
        ) from None
    return build(files, directory, table, host)
