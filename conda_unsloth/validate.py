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
Versions are matched with py-rattler's ``VersionSpec`` (conda's own rules) when it is installed,
else with the conda-style comparison below (no solver library needed).
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from .errors import SolveError, UnsolvableError
from .knowledge.packages import is_cpu_torch, torch_cuda
from .knowledge.rules import evaluate
from .target import CudaFrom

if TYPE_CHECKING:
    from .knowledge import Knowledge
    from .solvers.base import Record, SolvedEnv
    from .spec import EnvSpec
    from .target import Target

TRITON_NAMES = ("torchtriton", "triton")
_OPS = ("==", "!=", ">=", "<=", "~=", ">", "<", "=")
_PYT_BUILD = re.compile(r"_pyt([0-9]+\.[0-9]+(?:\.[0-9]+)?)$")
_SPEC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ValidationError(SolveError):
    """The solver returned a solution that is not the intended stack (exit 1)."""

    return_code = 1


# ----------------------------------------------------------------------------- conda specs


_COMPONENT = re.compile(r"[0-9]+|[a-z]+|\*")


def _conda_key(v: str) -> tuple[tuple[tuple[int, int | str], ...], ...]:
    """A sort key following conda's VersionOrder for the common cases: epoch, then dot/
    underscore/dash separated components, each split into numbers and letters; a number
    beats any string, ``dev`` sorts before every string and ``post`` after; ``+local`` last."""
    text = v.strip().lower()
    epoch, _, text = text.rpartition("!") if "!" in text else ("0", "", text)
    main, _, local = text.partition("+")

    def part(tok: str) -> tuple[int, int | str]:
        if tok.isdigit():
            return (2, int(tok))
        if tok == "post":
            return (3, 0)
        if tok == "dev":
            return (-1, 0)
        return (1, tok)

    def segments(s: str) -> tuple[tuple[tuple[int, int | str], ...], ...]:
        out = []
        for comp in re.split(r"[._-]", s):
            toks = _COMPONENT.findall(comp)
            if toks and not toks[0].isdigit():
                toks.insert(0, "0")
            out.append(tuple(part(t) for t in toks) or ((2, 0),))
        return tuple(out)

    return (
        (part(epoch if epoch.isdigit() else "0"),),
        *segments(main),
        ((0, 0),),
        *segments(local),
    )


def _compare(a: str, b: str) -> int:
    """-1, 0 or 1: ``a`` against ``b`` in conda's order (trailing zero components ignored)."""
    ka, kb = list(_conda_key(a)), list(_conda_key(b))
    sep = ((0, 0),)
    ia, ib = ka.index(sep), kb.index(sep)
    ma, mb = ka[:ia], kb[:ib]
    n = max(len(ma), len(mb))
    ma += [((2, 0),)] * (n - len(ma))
    mb += [((2, 0),)] * (n - len(mb))
    for x, y in zip(ma + ka[ia:], mb + kb[ib:], strict=False):
        m = max(len(x), len(y))
        xx = list(x) + [(2, 0)] * (m - len(x))
        yy = list(y) + [(2, 0)] * (m - len(y))
        if xx != yy:
            return -1 if _lt(xx, yy) else 1
    return 0


def _lt(x: list[tuple[int, int | str]], y: list[tuple[int, int | str]]) -> bool:
    for (ra, va), (rb, vb) in zip(x, y, strict=True):
        if ra != rb:
            return ra < rb
        if va != vb:
            return str(va) < str(vb) if isinstance(va, str) else int(va) < int(vb)
    return False


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
    c = _compare(version, value)
    if op in ("", "=="):
        return c == 0
    if op == "!=":
        return c != 0
    if op == ">=":
        return c >= 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    if op == "<":
        return c < 0
    # ~=: at least value, same release prefix except the last component
    parts = value.split(".")
    return c >= 0 and _prefix_match(version, ".".join(parts[:-1]))


def _rattler_matches(spec: str, version: str) -> bool | None:
    """py-rattler's verdict (conda's rules), None when py-rattler is absent or cannot parse."""
    try:
        from rattler import Version, VersionSpec
        from rattler.exceptions import InvalidVersionError, InvalidVersionSpecError
    except ImportError:
        return None
    try:
        return bool(VersionSpec(spec.strip()).matches(Version(version)))
    except (InvalidVersionError, InvalidVersionSpecError):  # our own rules below
        return None


def version_matches(spec: str, version: str) -> bool:
    """Does ``version`` satisfy the conda version spec ``spec`` (``>=12.1,<12.2``,
    ``2.5.1.*``, ``3.1.0``, ``1.0|2.0``, ``*``)? A bare version is an exact match, as in a
    ``depends`` line; ``=1.2`` and ``1.2.*`` are prefix matches. Versions need not be PEP 440
    (``1.1.1w`` satisfies ``>=1.1.1a``)."""
    verdict = _rattler_matches(spec, version)
    if verdict is not None:
        return verdict
    return conda_version_matches(spec, version)


def conda_version_matches(spec: str, version: str) -> bool:
    """:func:`version_matches` without py-rattler: conda's spec rules, our own comparison."""
    return any(
        all(_term_matches(t, version) for t in alt.split(",")) for alt in spec.strip().split("|")
    )


def dep_name(dep: str) -> str:
    return dep.split()[0] if dep.split() else ""


def spec_name(spec: str) -> str:
    """The package name of a conda match spec: ``chan/subdir::name[...]>=1 build`` -> name
    (also ``xformers~=0.0.28``, ``xformers[version='>=0.0.28']``, ``xformers 0.0.28``)."""
    m = _SPEC_NAME.match(spec.split("::", 1)[-1].strip())
    return m.group(0) if m else ""


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


def _wanted_cuda(target: Target) -> str:
    if target.cuda_from is CudaFrom.SOLVE:
        return f"CUDA {' or '.join(target.cuda_allowed) or target.cuda} ({target.cuda_source})"
    return f"CUDA {target.cuda}"


def check_pytorch(
    solved: SolvedEnv, target: Target, checked: list[str] | None = None
) -> list[str]:
    checked = [] if checked is None else checked
    out: list[str] = []
    pt = solved.record("pytorch")
    wanted = _wanted_cuda(target)
    if pt is None:
        return [f"the solution has no pytorch (target: a {wanted} build)"]
    pkg = pt.to_package()
    if is_cpu_torch(pkg):
        out.append(f"{describe(pt)} is a CPU build; the target is {wanted}")
    else:
        cuda = torch_cuda(pkg)
        if target.cuda_from is CudaFrom.SOLVE:
            ok = cuda is not None and cuda in target.cuda_allowed
        else:
            ok = cuda == target.cuda
        if cuda is None:
            out.append(f"{describe(pt)} is not recognisably a CUDA build; the target is {wanted}")
        elif not ok:
            out.append(f"{describe(pt)} is a CUDA {cuda} build; the target is {wanted}")
        else:
            checked.append(f"pytorch {pt.version} is a CUDA {cuda} build")
    mutex = solved.record("pytorch-mutex")
    if mutex is not None and mutex.build == "cpu":
        out.append(f"{describe(mutex)} selects the CPU variant of pytorch")
    cpuonly = solved.record("cpuonly")
    if cpuonly is not None:
        out.append(f"{describe(cpuonly)} forces the CPU variant of pytorch")
    return out


def check_xformers(
    solved: SolvedEnv, requested: bool, checked: list[str] | None = None
) -> list[str]:
    checked = [] if checked is None else checked
    xf, pt = solved.record("xformers"), solved.record("pytorch")
    if xf is None:
        if requested:
            return ["the solution has no xformers, but the spec asks for it"]
        checked.append("no xformers (none asked for)")
        return []
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
    if not out:
        checked.append(f"xformers {xf.version} ({xf.build}) was built for pytorch {pt.version}")
    return out


def check_triton(solved: SolvedEnv, checked: list[str] | None = None) -> list[str]:
    checked = [] if checked is None else checked
    pt = solved.record("pytorch")
    if pt is None:
        return []
    out: list[str] = []
    pins = [d for d in pt.depends if dep_name(d) in TRITON_NAMES]
    for d in pins:
        name = dep_name(d)
        rec = solved.record(name)
        if rec is None:
            out.append(f"{describe(pt)} pins '{d}', but the solution has no {name}")
        elif not dep_admits(d, rec):
            out.append(f"{describe(pt)} pins '{d}', but the solution has {describe(rec)}")
        else:
            checked.append(f"{name} {rec.version} is the one pytorch pins ('{d}')")
    if not pins:
        checked.append("pytorch pins no triton")
    return out


def check_rules(solved: SolvedEnv, kb: Knowledge, checked: list[str] | None = None) -> list[str]:
    checked = [] if checked is None else checked
    rules = [i for i in kb.issues.values() if i.scope == "packages"]
    out = [
        f"{f.id} ({f.issue.title}): {f.detail}"
        for f in evaluate(solved.packages(), kb)
        if f.issue.scope == "packages"
    ]
    if not out:
        checked.append(f"no known issue ({len(rules)} package rules)")
    return out


def violations(
    solved: SolvedEnv, kb: Knowledge, target: Target, checked: list[str] | None = None
) -> list[str]:
    """Every way ``solved`` misses the intended stack; what passed is added to ``checked``."""
    requested = solved.spec is not None and any(
        spec_name(s) == "xformers" for s in solved.spec.conda_specs()
    )
    passed = [] if checked is None else checked
    return (
        check_pytorch(solved, target, passed)
        + check_xformers(solved, requested, passed)
        + check_triton(solved, passed)
        + check_rules(solved, kb, passed)
    )


def validate(solved: SolvedEnv, kb: Knowledge, target: Target) -> tuple[str, ...]:
    """Raise :class:`ValidationError` listing every violation; return what was checked (each
    passed) when clean."""
    checked: list[str] = []
    found = violations(solved, kb, target, checked)
    if found:
        raise ValidationError(
            f"the {solved.solver} solution is not the intended stack: " + "; ".join(found),
            hints=[
                "nothing was written; pin the intended builds (conda unsloth env ...) and "
                "solve again, or report the channel data if the pins were already right"
            ],
            violations=found,
        )
    return tuple(checked)


# ----------------------------------------------------------------------------- unsolvable


def unsolvable_hints(
    explanation: str,
    spec: EnvSpec,
    target: Target,
    kb: Knowledge,
    profile_name: str | None = None,
) -> list[str]:
    """Our domain hints for a failed solve, from the knowledge base (``profile_name``: the
    plan's profile; by default the one the spec's CUDA package implies)."""
    from .knowledge import version_key
    from .target import file_pins

    hints: list[str] = []
    pins = file_pins(spec, "", target.platform)
    profile_name = profile_name or pins.profile
    profile = kb.profiles.get(profile_name) if profile_name else None
    text = explanation.lower()
    py = pins.python
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
    err: UnsolvableError,
    spec: EnvSpec,
    target: Target,
    kb: Knowledge,
    profile: str | None = None,
) -> UnsolvableError:
    """``err`` with the solver's explanation first, then our hints."""
    return UnsolvableError(
        err.message,
        hints=[*err.hints, *unsolvable_hints(err.message, spec, target, kb, profile)],
        **err.details,
    )
