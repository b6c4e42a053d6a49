"""libmamba through micromamba: ``micromamba create --dry-run --json`` as a :class:`Solver`.

The channels are the spec's in strict priority order, each given as the URL the rattler
backend would use (names map to ``https://conda.anaconda.org/<name>``, local channels are
checked first, ``nodefaults`` is dropped; ``channel::spec`` follows its channel the same way),
with ``--override-channels --no-rc`` so nothing of the user's configuration joins the solve.
The target's virtual packages reach libmamba as ``CONDA_OVERRIDE_CUDA``/``_GLIBC``/``_LINUX``
(and ``_ARCHSPEC``, the platform's baseline, as inside conda), never this host's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import SolveError, UnsolvableError
from ..redact import redact_text, redact_url
from ..solvers.base import Record, SolvedEnv
from . import NAME, Micromamba, problem_lines, reason, require

if TYPE_CHECKING:
    from ..spec import EnvSpec
    from ..target import Target

ARCHSPEC_BASELINE = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le"}
_OVERRIDE = {"__cuda": "CUDA", "__glibc": "GLIBC", "__linux": "LINUX"}


def overrides(target: Target) -> dict[str, str]:
    """``CONDA_OVERRIDE_*`` for ``target`` (micromamba reads these; its other settings of the
    user's are dropped: :meth:`Micromamba.environ`), and the virtual packages they make."""
    env = {
        f"CONDA_OVERRIDE_{_OVERRIDE[vp.name]}": vp.version
        for vp in target.virtual_packages()
        if vp.name in _OVERRIDE
    }
    env.setdefault("CONDA_OVERRIDE_CUDA", "")  # no __cuda unless the target has one
    arch = ARCHSPEC_BASELINE.get(target.platform)
    if arch:
        env["CONDA_OVERRIDE_ARCHSPEC"] = arch
    return env


def to_record(link: dict[str, Any]) -> Record:
    """One ``LINK`` entry of micromamba's JSON as our Record (its ``timestamp`` is in seconds,
    repodata's and ours in milliseconds)."""
    ts = link.get("timestamp")
    if isinstance(ts, int) and 0 < ts < 100_000_000_000:
        ts *= 1000
    noarch = link.get("noarch")
    return Record(
        name=str(link["name"]),
        version=str(link["version"]),
        build=str(link.get("build_string") or link["build"]),
        build_number=int(link.get("build_number") or 0),
        channel=redact_url(str(link.get("channel", "")).rstrip("/")),
        subdir=str(link.get("subdir", "")),
        url=str(link["url"]),
        fn=str(link.get("fn") or str(link["url"]).rsplit("/", 1)[-1]),
        md5=link.get("md5") or None,
        sha256=link.get("sha256") or None,
        depends=tuple(link.get("depends") or ()),
        constrains=tuple(link.get("constrains") or ()),
        size=link.get("size"),
        timestamp=ts if isinstance(ts, int) else None,
        noarch=noarch if noarch in ("python", "generic") else None,
        license=link.get("license") or None,
    )


class MicromambaSolver:
    name = NAME

    def __init__(self, micromamba: Micromamba | None = None) -> None:
        self.micromamba = micromamba

    def solve(self, spec: EnvSpec, target: Target, *, offline: bool = False) -> SolvedEnv:
        from ..solvers.rattler import channel_urls, rewrite_spec

        mm = self.micromamba or require()
        subdirs = [target.platform, "noarch"]
        urls = channel_urls(spec.channels, subdirs)
        notes: list[str] = []
        specs = [rewrite_spec(s, urls, notes) for s in spec.conda_specs()]
        with _solve_root(mm, urls) as solver_mm:
            return self._solve(solver_mm, spec, target, urls, specs, notes, offline)

    def _solve(
        self,
        mm: Micromamba,
        spec: EnvSpec,
        target: Target,
        urls: list[str],
        specs: list[str],
        notes: list[str],
        offline: bool,
    ) -> SolvedEnv:
        from ..solvers.rattler import pip_packages, solved_extra

        nowhere = mm.root / "dry-run" / secrets.token_hex(8)  # never created by a dry run
        args = ["create", "--dry-run", "--json", "-y", "-p", str(nowhere), "--no-rc"]
        args += ["--override-channels", "--strict-channel-priority", "--platform", target.platform]
        for u in urls:
            args += ["-c", u]
        if offline:
            args.append("--offline")
        env = overrides(target)
        start = time.perf_counter()
        code, out, err = mm.run([*args, "--", *specs], extra_env=env)
        seconds = time.perf_counter() - start
        doc = _json(out)
        if code != 0 or not doc.get("success"):
            raise self._failure(mm, args, specs, env, doc, err, urls, target)
        links = (doc.get("actions") or {}).get("LINK") or []
        records = tuple(sorted((to_record(x) for x in links), key=lambda r: r.name))
        vps = [str(vp) for vp in target.virtual_packages()]
        if env.get("CONDA_OVERRIDE_ARCHSPEC"):
            vps.append(f"__archspec=1={env['CONDA_OVERRIDE_ARCHSPEC']}")
        return SolvedEnv(
            platform=target.platform,
            channels=tuple(redact_url(u.rstrip("/")) for u in urls),
            records=records,
            virtual_packages=tuple(vps),
            solver=f"libmamba (micromamba {mm.version()})",
            pip=pip_packages(spec),
            pip_constraints=tuple(d.spec for d in spec.pip_constraints),
            spec=spec,
            seconds=seconds,
            extra=solved_extra(spec, notes),
        )

    @staticmethod
    def _failure(
        mm: Micromamba,
        args: list[str],
        specs: list[str],
        env: dict[str, str],
        doc: dict[str, Any],
        err: str,
        urls: list[str],
        target: Target,
    ) -> SolveError:
        problems = doc.get("solver_problems")
        if isinstance(problems, list) and problems:
            # the readable explanation (the conflict tree) is printed only without --json
            _, _, plain = mm.run(
                [a for a in args if a != "--json"] + ["--", *specs], extra_env=env
            )
            lines = problem_lines(plain)
            tree = [ln for ln in lines if ln != "Could not solve for environment specs"]
            message = " ".join(tree) or "; ".join(str(p) for p in problems)
            return UnsolvableError(
                redact_text(f"micromamba could not solve: {message}"),
                channels=[redact_url(u) for u in urls],
                virtual_packages=[str(vp) for vp in target.virtual_packages()],
            )
        last = err.strip().splitlines()[-1] if err.strip() else "no output"
        return SolveError(
            redact_text(f"micromamba failed to solve: {reason(problem_lines(err), last)}"),
            hints=["check the channels (and --offline: a channel needs cached repodata)"],
        )


@contextlib.contextmanager
def _solve_root(mm: Micromamba, urls: list[str]) -> Iterator[Micromamba]:
    """micromamba caches the repodata of every channel it reads. Remote channels: in our cache
    folder (an --offline solve needs it there). Only local ``file://`` channels: nothing to
    cache, so the solve runs in a root of its own that is removed afterwards, and a solve (or
    a dry run) leaves nothing behind, as a rattler solve of local channels does."""
    if not all(u.startswith("file://") for u in urls):
        yield mm
        return
    root = mm.root / f"solve-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield Micromamba(mm.exe, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _json(out: str) -> dict[str, Any]:
    text = out.strip()
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
