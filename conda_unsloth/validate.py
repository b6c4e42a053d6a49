"""Prove a solution is the stack we meant, whatever backend produced it.

A solved environment passes only if:

* its pytorch is a CUDA build of the target's CUDA (never a CPU build, never
  ``pytorch-mutex=*=cpu`` or ``cpuonly``);
* its xformers was built for exactly the solved pytorch: a pytorch-channel build carries
  ``pyt<version>`` in its build string, a conda-forge build is a ``cuda*`` build; either way
  every ``pytorch`` line of its depends admits the solved pytorch;
* the triton pytorch pins (pytorch's ``torchtriton``/``triton`` depends line) is the one solved;
* no known-issue rule of scope ``packages`` fires (``rules.evaluate``).

A violation raises :class:`ValidationError` naming the record (name version build channel).
Unsatisfiable solves get domain hints from the knowledge base (:func:`explain_unsolvable`).
No solver library is imported here: versions are matched with conda's spec rules below.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from .errors import SolveError, UnsolvableError
from .rules import evaluate, is_cpu_torch, torch_cuda

if TYPE_CHECKING:
    from .knowledge import Knowledge
    from .select import Target
    from .solvers.base import Record, SolvedEnv
    from .spec import EnvSpec

TRITON_NAMES = ("torchtriton", "triton")
_OPS = ("==", "!=", ">=", "<=", "~=", ">", "<", "=")
_PYT_BUILD = re.compile(r"_pyt(\d+\.\d+(?:\.\d+)?)$")


class ValidationError(SolveError):
    """The solver returned a solution that is not the intended stack (exit 1)."""

    return_code = 1


# ----------------------------------------------------------------------------- conda specs


def _version(v: str) -> Version | None:
    try:
        return Version(v)
    except InvalidVersion:
        return None


def _prefix_match(version: str, prefix: str) -> bool:
    want = [p for p in prefix.rstrip("*").rstrip(".").split(".") if p]
    have = version.split(".")
    return have[: len(want)] == want


def _term_matches(term: str, version: str) -> bool:
    term = term.strip()
    if term in ("", "*"):
        return True
    op = next((o for o in _OPS if term.startswith(o)), "")
    value = term[len(op) :].strip()
    if op == "=" or (op in ("", "==") and value.endswith("*")):
        return _prefix_match(version, value)
    if op == "!=" and value.endswith("*"):
        return not _prefix_match(version, value)
    if op in ("", "=="):
        a, b = _version(version), _version(value)
        return a == b if a is not None and b is not None else version == value
    a, b = _version(version), _version(value)
    if a is None or b is None:
        return False
    if op == "!=":
        return a != b
    if op == ">=":
        return a >= b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == "<":
        return a < b
    # ~=: at least value, same release prefix except the last component
    parts = value.split(".")
    return a >= b and _prefix_match(version, ".".join(parts[:-1]))


def version_matches(spec: str, version: str) -> bool:
    """Does ``version`` satisfy the conda version spec ``spec`` (``>=12.1,<12.2``,
    ``2.5.1.*``, ``3.1.0``, ``1.0|2.0``, ``*``)? A bare version is an exact match, as in a
    ``depends`` line; ``=1.2`` and ``1.2.*`` are prefix matches."""
    return any(
        all(_term_matches(t, version) for t in alt.split(",")) for alt in spec.strip().split("|")
    )


def dep_name(dep: str) -> str:
    return dep.split()[0] if dep.split() else ""


def dep_admits(dep: str, rec: Record) -> bool:
    """Does the ``depends`` line ``dep`` (``name [version [build]]``) admit ``rec``?"""
    parts = dep.split()
    if not parts or parts[0] != rec.name:
        return False
    if len(parts) > 1 and not version_matches(parts[1], rec.version):
        return False
    return not (len(parts) > 2 and not fnmatch.fnmatchcase(rec.build, parts[2]))


def describe(rec: Record) -> str:
    """``name version build (channel)`` for messages."""
    return f"{rec.name} {rec.version} {rec.build} ({rec.channel_name})"


# ----------------------------------------------------------------------------- checks


def check_pytorch(solved: SolvedEnv, target: Target) -> list[str]:
    out: list[str] = []
    pt = solved.record("pytorch")
    if pt is None:
        return [f"the solution has no pytorch (target: a CUDA {target.cuda} build)"]
    pkg = pt.to_package()
    if is_cpu_torch(pkg):
        out.append(f"{describe(pt)} is a CPU build; the target is CUDA {target.cuda}")
    else:
        cuda = torch_cuda(pkg)
        if cuda is None:
            out.append(
                f"{describe(pt)} is not recognisably a CUDA build; the target is CUDA {target.cuda}"
            )
        elif cuda != target.cuda:
            out.append(f"{describe(pt)} is a CUDA {cuda} build; the target is CUDA {target.cuda}")
    mutex = solved.record("pytorch-mutex")
    if mutex is not None and mutex.build == "cpu":
        out.append(f"{describe(mutex)} selects the CPU variant of pytorch")
    cpuonly = solved.record("cpuonly")
    if cpuonly is not None:
        out.append(f"{describe(cpuonly)} forces the CPU variant of pytorch")
    return out


def check_xformers(solved: SolvedEnv, requested: bool) -> list[str]:
    xf, pt = solved.record("xformers"), solved.record("pytorch")
    if xf is None:
        return ["the solution has no xformers, but the spec asks for it"] if requested else []
    if pt is None:
        return []
    out: list[str] = []
    m = _PYT_BUILD.search(xf.build)
    if m:
        if m.group(1) != pt.version:
            out.append(
                f"{describe(xf)} was built for pytorch {m.group(1)}, but the solved pytorch is "
                f"{describe(pt)}"
            )
    elif not xf.build.startswith("cuda"):
        out.append(f"{describe(xf)} is not a CUDA build (expected a pyt<version> or cuda* build)")
    torch_deps = [d for d in xf.depends if dep_name(d) == "pytorch"]
    if not torch_deps and not m:
        out.append(f"{describe(xf)} does not pin pytorch, so it cannot be proven built for it")
    for d in torch_deps:
        if not dep_admits(d, pt):
            out.append(f"{describe(xf)} depends on '{d}', which excludes {describe(pt)}")
    return out


def check_triton(solved: SolvedEnv) -> list[str]:
    pt = solved.record("pytorch")
    if pt is None:
        return []
    out: list[str] = []
    for d in pt.depends:
        name = dep_name(d)
        if name not in TRITON_NAMES:
            continue
        rec = solved.record(name)
        if rec is None:
            out.append(f"{describe(pt)} pins '{d}', but the solution has no {name}")
        elif not dep_admits(d, rec):
            out.append(f"{describe(pt)} pins '{d}', but the solution has {describe(rec)}")
    return out


def check_rules(solved: SolvedEnv, kb: Knowledge) -> list[str]:
    return [
        f"{f.id} ({f.issue.title}): {f.detail}"
        for f in evaluate(solved.packages(), kb)
        if f.issue.scope == "packages"
    ]


def violations(solved: SolvedEnv, kb: Knowledge, target: Target) -> list[str]:
    requested = solved.spec is not None and any(
        dep_name(s.split("::", 1)[-1].replace("=", " ").replace("<", " ").replace(">", " "))
        == "xformers"
        for s in solved.spec.conda_specs()
    )
    return (
        check_pytorch(solved, target)
        + check_xformers(solved, requested)
        + check_triton(solved)
        + check_rules(solved, kb)
    )


def validate(solved: SolvedEnv, kb: Knowledge, target: Target) -> None:
    """Raise :class:`ValidationError` listing every violation; return None when clean."""
    found = violations(solved, kb, target)
    if found:
        raise ValidationError(
            f"the {solved.solver} solution is not the intended stack: " + "; ".join(found),
            hints=[
                "nothing was written; pin the intended builds (conda unsloth env ...) and "
                "solve again, or report the channel data if the pins were already right"
            ],
            violations=found,
        )


# ----------------------------------------------------------------------------- unsolvable


def _profile_of(spec: EnvSpec, kb: Knowledge) -> str | None:
    if spec.profile:
        return spec.profile
    names = {dep_name(s.split("::", 1)[-1].replace("=", " ")) for s in spec.conda_specs()}
    if "pytorch-cuda" in names:
        return "pytorch"
    if "cuda-version" in names:
        return "conda-forge"
    return None


def unsolvable_hints(explanation: str, spec: EnvSpec, target: Target, kb: Knowledge) -> list[str]:
    """Our domain hints for a failed solve, from the knowledge base."""
    from .knowledge import version_key

    hints: list[str] = []
    profile_name = _profile_of(spec, kb)
    profile = kb.profiles.get(profile_name) if profile_name else None
    text = explanation.lower()
    py = spec.python
    if py is None:
        for s in spec.conda_specs():
            m = re.match(r"^python\s*=+\s*(3\.\d+)", s.replace(" ", ""))
            if m:
                py = m.group(1)
    if profile is not None and "xformers" in text:
        pys = sorted(
            {p for x in profile.xformers if not x.known_issue for p in x.python}, key=version_key
        )
        if pys and py and py not in pys:
            channel = "xformers-channel" if "xformers" in profile.channels else "conda-forge"
            hints.append(
                f"{channel} builds exist only for python {pys[0]}–{pys[-1]}; use --python {pys[-1]}"
            )
    if "__cuda" in text:
        hints.append(
            f"the solve saw __cuda={target.driver_cuda or target.cuda}; a build needing a newer "
            "CUDA driver cannot be installed: choose --cuda accordingly"
        )
    if profile is not None and "pytorch" in text and target.cuda not in profile.cudas:
        hints.append(f"profile {profile.name} has CUDA {', '.join(profile.cudas)}")
    if "cpu" in text and profile is not None and profile.name == "pytorch":
        hints.append(
            "the CUDA pins (pytorch build py*_cuda*, pytorch-mutex=1.0=cuda) exclude every CPU "
            "build on purpose; check that the nvidia channel is listed"
        )
    hints.append("conda unsloth env --json --dry-run shows the planned pins and why")
    return hints


def explain_unsolvable(
    err: UnsolvableError, spec: EnvSpec, target: Target, kb: Knowledge
) -> UnsolvableError:
    """``err`` with the solver's explanation first, then our hints."""
    return UnsolvableError(
        err.message,
        hints=[*err.hints, *unsolvable_hints(err.message, spec, target, kb)],
        **err.details,
    )
