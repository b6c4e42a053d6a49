"""Static diagnosis of an existing prefix: what is installed (conda records + site-packages
metadata, nothing imported), which known issues it triggers, and the exact commands that fix
each one for *this* env (its name or prefix, its python, its torch, its unsloth release).

The fix commands are computed, not copied: an xformers built for the installed torch from the
knowledge base, the unsloth release's own requirement ranges (``pip install --no-deps
"transformers<4.45.0"``), ``conda install -p PREFIX "mkl<2024.1"``, or a rebuild with
``conda unsloth create`` whose flags the planner has accepted.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import inventory as inv
from .errors import UnslothError
from .knowledge.packages import (
    HostFacts,
    Package,
    PackageSet,
    base_version,
    parse_version,
    provider,
    torch_cuda,
    torch_triton_pin,
)
from .knowledge.rules import Finding, evaluate, unsloth_violations

if TYPE_CHECKING:
    from .knowledge import Knowledge, UnslothRelease

# Distributions bound to the torch build: never fixed with a bare pip range.
TORCH_BOUND = frozenset({"torch", "xformers", "triton", "python", "torchvision"})


# A conda/pip spec made only of these characters is shown in double quotes, the way conda's
# docs write them ("mkl<2024.1"): nothing in it is special inside double quotes. Anything else
# (a version or build string read from a tampered record) is single-quoted by shlex.quote.
_PLAIN_SPEC = re.compile(r"[A-Za-z0-9_.,<>=!*+~-]+")
# Placeholders in knowledge-base fix commands: "-n ENV" (this env), "-n NEW_ENV" (a new one),
# "-p PREFIX" (this env by path) and "PREFIX/bin/python" (its python).
_PLACEHOLDER = re.compile(r"-n (NEW_)?ENV\b|-p PREFIX\b|PREFIX/bin/python\b")


def quote_spec(spec: str) -> str:
    """``spec`` as one shell word: ``"mkl<2024.1"`` when that is safe, else shlex.quote."""
    # "!=" is safe in double quotes; any other "!" is bash history expansion
    if _PLAIN_SPEC.fullmatch(spec) and "!" not in spec.replace("!=", ""):
        return f'"{spec}"'
    return shlex.quote(spec)


@dataclass(frozen=True)
class EnvRef:
    """How commands refer to the env: ``-n NAME`` when it was named, else ``-p PREFIX``.
    Every name and path is one shell word (shlex.quote), whatever the env is called."""

    prefix: Path
    name: str | None = None

    @property
    def flag(self) -> str:
        if self.name:
            return f"-n {shlex.quote(self.name)}"
        return f"-p {shlex.quote(str(self.prefix))}"

    @property
    def new_flag(self) -> str:
        if self.name:
            return f"-n {shlex.quote(self.name + '-fixed')}"
        return f"-p {shlex.quote(str(self.prefix) + '-fixed')}"

    @property
    def python(self) -> str:
        if (self.prefix / "python.exe").is_file() or (
            os.name == "nt" and not (self.prefix / "bin").is_dir()
        ):
            return shlex.quote(str(self.prefix / "python.exe"))
        return shlex.quote(str(self.prefix / "bin" / "python"))

    def pip_install(self, *specs: str) -> str:
        quoted = " ".join(quote_spec(s) for s in specs)
        return f"{self.python} -m pip install --no-deps {quoted}"


@dataclass(frozen=True)
class Diagnosed:
    finding: Finding
    fix: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        doc = self.finding.to_json()
        doc["fix_commands"] = list(self.fix)
        doc["why"] = self.finding.issue.fix
        return doc


@dataclass
class Diagnosis:
    env: EnvRef
    inventory: inv.Inventory
    findings: list[Diagnosed]
    host: HostFacts | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnosed]:
        return [d for d in self.findings if d.finding.issue.severity == "error"]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def stack(self) -> list[Package]:
        """The packages that make up the GPU stack, for the summary line."""
        ps = PackageSet(self.inventory.packages())
        out = []
        for name in ("python", "pytorch", "torch", "xformers", "unsloth"):
            out.extend(ps.all(name))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": str(self.env.prefix),
            "name": self.env.name,
            "ok": not self.errors,
            "exit_code": self.exit_code,
            "host": None
            if self.host is None
            else {
                "driver_cuda": self.host.driver_cuda,
                "archs": list(self.host.archs),
                "glibc": self.host.glibc,
            },
            "stack": [str(p) for p in self.stack()],
            "findings": [d.to_json() for d in self.findings],
            "notes": list(self.notes),
            "inventory": self.inventory.to_json(),
        }


# ----------------------------------------------------------------------------- diagnosis


def host_facts() -> HostFacts | None:
    """The GPU host's facts when a GPU/driver is present, else None. A driver CUDA or glibc
    that is not a version is unknown (the host rules skip what they cannot compare); only a
    malformed ``CONDA_OVERRIDE_CUDA`` is an error (``UsageError`` from host detection)."""
    from .host import detect

    h = detect()
    if not h.gpus and h.driver_cuda is None:
        return None
    cuda = h.driver_cuda if h.driver_cuda and parse_version(h.driver_cuda) else None
    glibc = h.glibc if h.glibc and parse_version(h.glibc) else None
    return HostFacts(driver_cuda=cuda, archs=h.archs, glibc=glibc)


def diagnose(
    prefix: Path,
    kb: Knowledge,
    host: HostFacts | None = None,
    name: str | None = None,
    scopes: tuple[str, ...] = ("packages", "host", "env"),
) -> Diagnosis:
    """Read ``prefix`` and evaluate every known-issue rule of ``scopes`` on it (``env``: what
    conda-unsloth recorded in the env's marker)."""
    inventory = inv.read(prefix)
    env = EnvRef(prefix, name)
    packages = inventory.packages()
    findings = [f for f in evaluate(packages, kb, host) if f.issue.scope in scopes]
    if "env" in scopes:
        findings += env_findings(prefix, kb)
    ps = PackageSet(packages)
    diagnosed = [Diagnosed(f, tuple(fix_commands(f, ps, kb, env, host))) for f in findings]
    notes = []
    if host is not None:
        unknown = [a for a in host.archs if parse_version(a) and a not in kb.gpu_archs]
        for a in unknown:
            notes.append(
                f"GPU sm_{a.replace('.', '')} is not in the knowledge base's architecture "
                "table: which kernels serve it was not checked"
            )
    un = ps.get("unsloth")
    if un is not None and kb.release(base_version(un.version)) is None:
        known = ", ".join(r.version for r in kb.releases)
        notes.append(
            f"unsloth {un.version} is not in the knowledge base ({known}); "
            "its own requirement ranges were not checked"
        )
    if not inventory.has_gpu_stack():
        notes.append("no torch, xformers or unsloth installed here: nothing to diagnose")
    return Diagnosis(env, inventory, diagnosed, host, notes)


def env_findings(prefix: Path, kb: Knowledge) -> list[Finding]:
    """Findings from the env's marker (conda-meta/conda-unsloth): a create that did not finish
    and a recorded verification that failed."""
    from . import marker

    doc = marker.read(prefix)
    if doc is None:
        return []
    out = []
    for issue in kb.issues.values():
        kind = issue.check.get("kind")
        detail = None
        if kind == "create_failed" and doc.get("status") == "failed":
            failure = doc.get("failure")
            why = failure.get("message") if isinstance(failure, dict) else failure
            when = doc.get("created")
            detail = "the marker says the create failed" + (f" ({when})" if when else "")
            if isinstance(why, str) and why.strip():
                detail += f": {' '.join(why.split())[:200]}"
        elif kind == "verification_failed":
            ver = doc.get("verification")
            if isinstance(ver, dict) and ver.get("verdict") == "fail":
                failed = [str(c) for c in ver.get("failed") or () if isinstance(c, str)]
                detail = "the recorded GPU verification failed" + (
                    f" ({', '.join(failed)})" if failed else ""
                )
                if isinstance(ver.get("time"), str):
                    detail += f" on {ver['time']}"
        if detail is not None:
            out.append(
                Finding(issue=issue, detail=detail, evidence=(str(marker.path_for(prefix)),))
            )
    return out


# ----------------------------------------------------------------------------- fixes


def fix_commands(
    f: Finding, ps: PackageSet, kb: Knowledge, env: EnvRef, host: HostFacts | None
) -> list[str]:
    """Concrete commands that fix ``f`` in this env, most direct first."""
    kind = str(f.issue.check.get("kind"))
    torch, xf = ps.torch(), ps.get("xformers")
    if kind in ("version_in", "xformers_torch_mismatch", "xformers_newer_than_torch"):
        if xf is not None and torch is not None:
            choice = _xformers_fix(xf, torch, ps, kb, env)
            if choice is not None:
                return [choice[0]]
        return [rebuild(ps, kb, env, host)]
    if kind == "mkl_too_new":
        limit = str(f.issue.check.get("max", "2024.1"))
        return [f"conda install {env.flag} {quote_spec(f'mkl<{limit}')}"]
    if kind == "unsloth_requirements":
        return _unsloth_fix(ps, kb, env, host)
    if kind == "bnb_missing_cuda" and torch is not None:
        cmd = _bnb_fix(torch, ps, kb, env)
        return [cmd] if cmd else [rebuild(ps, kb, env, host)]
    if kind == "triton_mismatch" and torch is not None:
        return _triton_fix(torch, ps, kb, env, host)
    if kind in ("create_failed", "verification_failed"):
        return [template(c, env) for c in f.issue.fix_commands]
    if kind == "duplicate_torch":
        conda_torch = next((p for p in ps.all("pytorch") if p.installer == "conda"), None)
        if conda_torch is not None:
            return [
                f"{env.python} -m pip uninstall -y torch",
                f"conda install {env.flag} --force-reinstall "
                + quote_spec(f"pytorch={conda_torch.version}={conda_torch.build}"),
            ]
        return [rebuild(ps, kb, env, host)]
    if kind == "python_xformers_channel" and xf is not None:
        row = next(
            (
                x
                for p in kb.profiles.values()
                for x in p.xformers
                if x.version == base_version(xf.version)
            ),
            None,
        )
        python = row.python[-1] if row is not None and row.python else None
        return [rebuild(ps, kb, env, host, python=python)]
    if kind in ("cpu_pytorch", "mixed_providers", "cuda_major_mismatch", "cuda_newer_than_driver"):
        return [rebuild(ps, kb, env, host)]
    return [template(c, env) for c in f.issue.fix_commands]


def template(cmd: str, env: EnvRef) -> str:
    """A knowledge-base fix command with its placeholders filled in for this env."""

    def fill(m: re.Match[str]) -> str:
        if m.group(0).startswith("PREFIX/"):
            return env.python
        return env.new_flag if m.group(1) else env.flag

    return _PLACEHOLDER.sub(fill, cmd)


def _xformers_fix(
    xf: Package, torch: Package, ps: PackageSet, kb: Knowledge, env: EnvRef
) -> tuple[str, str] | None:
    """The command that installs the xformers made for the installed torch (and free of known
    issues), and that xformers version."""
    from packaging.version import Version

    tv = base_version(torch.version)
    bad = _bad_xformers(kb)
    if xf.installer == "pip":
        wheels = [
            w
            for w in kb.xformers_pypi
            if w.version not in bad and _spec_has(w.torch, tv) and not w.torch.startswith(">")
        ]
        if not wheels:
            return None
        best = max(wheels, key=lambda w: Version(w.version))
        return env.pip_install(f"xformers=={best.version}"), best.version
    prov = provider(xf)
    if prov is None or prov not in kb.profiles:
        return None
    profile = kb.profiles[prov]
    py = ps.python()
    rows = [
        x
        for x in profile.xformers
        if x.known_issue is None
        and x.version not in bad
        and x.matches_pytorch(tv)
        and (py is None or py in x.python)
    ]
    if not rows:
        return None
    best_row = max(rows, key=lambda x: Version(x.version))
    if prov == "pytorch":
        cuda = torch_cuda(torch)
        cuda_build = profile.xformers_cuda_builds.get(cuda or "", "")
        if py is None or not cuda_build:
            return None
        build = profile.xformers_build.format(
            py_nodot=py.replace(".", ""), cuda_build=cuda_build, pytorch=tv
        )
        channels = " ".join(f"-c {shlex.quote(c)}" for c in profile.channels)
        spec = quote_spec(f"xformers={best_row.version}={build}")
        return f"conda install {env.flag} {channels} {spec}", best_row.version
    spec = quote_spec(f"xformers={best_row.version}")
    return f"conda install {env.flag} -c conda-forge {spec}", best_row.version


def _bad_xformers(kb: Knowledge) -> set[str]:
    """xformers versions a version_in rule on xformers marks as broken (F1)."""
    out: set[str] = set()
    for issue in kb.issues.values():
        c = issue.check
        if c.get("kind") == "version_in" and c.get("package") == "xformers":
            out.update(str(v) for v in c.get("versions", []))
    return out


def _spec_has(spec: str, version: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def _bnb_fix(torch: Package, ps: PackageSet, kb: Knowledge, env: EnvRef) -> str | None:
    from packaging.version import Version

    cuda = torch_cuda(torch)
    if cuda is None:
        return None
    rel = _release(ps, kb)
    spec = rel.requires.get("bitsandbytes", "") if rel else ""
    tv = base_version(torch.version)
    ok = [
        w
        for w in kb.bnb_pypi
        if w.lib_for(cuda) is not None
        and (not spec or _spec_has(spec, w.version))
        and (not w.torch or _spec_has(w.torch, tv))
    ]
    if not ok:
        return None
    best = max(ok, key=lambda w: Version(w.version))
    return env.pip_install(f"bitsandbytes=={best.version}")


def _triton_fix(
    torch: Package, ps: PackageSet, kb: Knowledge, env: EnvRef, host: HostFacts | None
) -> list[str]:
    """Give the torch Python imports the triton it pins: drop a pip triton that shadows
    conda's and restore conda's record, or install the pinned wheel."""
    pin = torch_triton_pin(torch, ps, kb)
    triton = ps.triton()
    if pin is None or triton is None:
        return [rebuild(ps, kb, env, host)]
    stale = next(
        (p for n in ("torchtriton", "triton") for p in ps.all(n) if p.installer == "conda"), None
    )
    if triton.installer == "pip" and stale is not None and base_version(stale.version) == pin:
        return [
            f"{env.python} -m pip uninstall -y {triton.name}",
            f"conda install {env.flag} --force-reinstall "
            + quote_spec(f"{stale.name}={stale.version}={stale.build}"),
        ]
    if triton.installer == "pip":
        return [env.pip_install(f"triton=={pin}")]
    return [rebuild(ps, kb, env, host)]


def _release(ps: PackageSet, kb: Knowledge) -> UnslothRelease | None:
    un = ps.get("unsloth")
    return kb.release(base_version(un.version)) if un is not None else None


def _unsloth_fix(ps: PackageSet, kb: Knowledge, env: EnvRef, host: HostFacts | None) -> list[str]:
    """pip ranges for the pip-installed companions; a rebuild for anything torch-bound."""
    pip_specs = []
    needs_rebuild = False
    extra: list[str] = []
    torch = ps.torch()
    rel = _release(ps, kb)
    for v in unsloth_violations(ps, kb):
        if v.requirement == "xformers" and torch is not None:
            # the xformers made for the installed torch, when it meets the range (a missing
            # one comes from torch's provider)
            installed = v.installed or Package("xformers", "", torch.build, torch.channel)
            choice = _xformers_fix(installed, torch, ps, kb, env)
            if choice is not None and _spec_has(v.spec, choice[1]):
                extra.append(choice[0])
                continue
        if v.requirement in TORCH_BOUND:
            needs_rebuild = True
        elif v.installed is None:
            pin = rel.companions.get(v.requirement) if rel is not None else None
            pip_specs.append(f"{v.requirement}=={pin}" if pin else f"{v.requirement}{v.spec}")
        elif v.installed.installer != "pip":
            needs_rebuild = True
        else:
            pip_specs.append(f"{v.requirement}{v.spec}")
    out = [env.pip_install(*pip_specs)] if pip_specs else []
    out.extend(extra)
    if needs_rebuild:
        out.append(rebuild(ps, kb, env, host))
    return out


def rebuild(
    ps: PackageSet,
    kb: Knowledge,
    env: EnvRef,
    host: HostFacts | None,
    python: str | None = None,
) -> str:
    """``conda unsloth create`` for a new env next to this one, keeping as much of this env's
    choices (unsloth release, python, CUDA) as the planner accepts."""
    from .select import Request
    from .target import DEFAULT_PROFILE

    rel = _release(ps, kb)
    torch = ps.torch()
    cuda = torch_cuda(torch) if torch is not None else None
    if host is not None and host.driver_cuda is not None and cuda is not None:
        cuda = (
            _highest_cuda_at_most(kb, host.driver_cuda) if _newer(cuda, host.driver_cuda) else cuda
        )
    py = python or ps.python()
    torch_profile = provider(torch) if torch is not None else None
    profile = rel.profiles[0] if rel is not None else torch_profile
    attempts = [
        Request(profile=profile, unsloth=rel.version if rel else None, python=py, cuda=cuda),
        Request(profile=profile, unsloth=rel.version if rel else None, cuda=cuda),
        Request(profile=profile, unsloth=rel.version if rel else None),
        Request(profile=profile),
        Request(),
    ]
    for req in attempts:
        if _plannable(req, kb, host):
            flags = []
            if req.profile and req.profile != DEFAULT_PROFILE:
                flags.append(f"--profile {shlex.quote(req.profile)}")
            if req.unsloth:
                flags.append(f"--unsloth {shlex.quote(req.unsloth)}")
            if req.python:
                flags.append(f"--python {shlex.quote(req.python)}")
            if req.cuda:
                flags.append(f"--cuda {shlex.quote(req.cuda)}")
            return " ".join(["conda unsloth create", env.new_flag, *flags])
    return f"conda unsloth create {env.new_flag}"


def _newer(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    return va is not None and vb is not None and va > vb


def _highest_cuda_at_most(kb: Knowledge, limit: str) -> str | None:
    top = parse_version(limit)
    if top is None:
        return None
    cudas = {c: parse_version(c) for p in kb.profiles.values() for c in p.cudas}
    ok = [(v, c) for c, v in cudas.items() if v is not None and v <= top]
    return max(ok)[1] if ok else None


def _plannable(req: Any, kb: Knowledge, host: HostFacts | None) -> bool:
    from .host import Gpu, Host, conda_platform
    from .select import select

    h = Host(
        platform=conda_platform() if conda_platform().startswith("linux") else "linux-64",
        driver_cuda=host.driver_cuda if host else None,
        gpus=tuple(Gpu(i, "GPU", a) for i, a in enumerate(host.archs)) if host else (),
        glibc=host.glibc if host else None,
    )
    try:
        select(req, h, kb)
    except UnslothError:
        return False
    return True


# ----------------------------------------------------------------------------- rendering


def render(d: Diagnosis, verbose: bool = True) -> str:
    lines = [f"environment: {d.env.prefix}"]
    stack = d.stack()
    if stack:
        lines.append("stack: " + ", ".join(str(p) for p in stack))
    if d.host is not None:
        archs = ", ".join(f"sm_{a.replace('.', '')}" for a in d.host.archs) or "unknown"
        lines.append(f"host: driver CUDA {d.host.driver_cuda or 'unknown'}, GPU arch {archs}")
    for note in d.notes:
        lines.append(f"note: {note}")
    if not d.findings:
        lines.append("no known problems found")
        return "\n".join(lines) + "\n"
    lines.append(f"{len(d.findings)} known problem(s):")
    for item in d.findings:
        f = item.finding
        lines.append("")
        lines.append(f"{f.id} ({f.issue.severity}): {f.issue.title}")
        lines.append(f"  found: {f.detail}")
        if verbose and f.evidence:
            lines.append("  evidence: " + "; ".join(f.evidence))
        if verbose:
            lines.append(f"  symptom: {f.issue.symptom}")
        lines.append(f"  why: {f.issue.fix}")
        for cmd in item.fix:
            lines.append(f"  fix: {cmd}")
    return "\n".join(lines) + "\n"
