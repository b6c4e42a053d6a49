"""What the knowledge base checks about itself when it is loaded from YAML (the bundle was
checked when it was generated): every stack it allows against its own known-issue rules of
scope ``packages`` (a match means the files contradict each other), and, for every stack and
GPU arch it knows, the host-scope issues the planner must respect (stored in the bundle)."""

from __future__ import annotations

from .model import Knowledge
from .packages import HostFacts
from .rules import evaluate
from .stacks import candidates, planned_packages


def host_conflicts(
    kb: Knowledge,
) -> dict[tuple[str, str, str, str, str], tuple[tuple[str, str], ...]]:
    """For every stack this knowledge base can select and every GPU arch it knows, the
    host-scope known issues (id, detail) the rules find; computed once at load (the bundle
    stores it), so a plan never loads the rules."""

    table: dict[tuple[str, str, str, str, str], tuple[tuple[str, str], ...]] = {}
    host_ids = {i.id for i in kb.issues.values() if i.scope == "host"}
    for profile in kb.profiles.values():
        releases = [r for r in kb.releases if profile.name in r.profiles]
        for cuda in profile.cudas:
            seen: set[tuple[str, str]] = set()
            for release in releases:
                for pt, py, xf, rel in candidates(profile, kb, cuda, release):
                    if (pt.version, xf.version) in seen:
                        continue
                    seen.add((pt.version, xf.version))
                    pkgs = planned_packages(profile, cuda, (pt, py, xf, rel))
                    for arch in kb.gpu_archs:
                        found = evaluate(pkgs, kb, HostFacts(archs=(arch,)), only=host_ids)
                        if found:
                            key = (profile.name, cuda, pt.version, xf.version, arch)
                            table[key] = tuple((f.id, f.detail) for f in found)
    return table


def knowledge_conflicts(kb: Knowledge) -> list[str]:
    """Every stack this knowledge base can select, run through its own known-issue rules (the
    package ones): a stack that trips one means the files contradict each other. The loader
    calls this once, so a plan never has to load the rules to refuse a known-bad env."""

    problems = []
    seen: set[tuple[str, ...]] = set()
    for profile in kb.profiles.values():
        releases = [r for r in kb.releases if profile.name in r.profiles]
        for cuda in profile.cudas:
            for release in releases:
                for pt, py, xf, rel in candidates(profile, kb, cuda, release):
                    key = (profile.name, cuda, pt.version, py, xf.version, rel.version)
                    if key in seen:
                        continue
                    seen.add(key)
                    pkgs = planned_packages(profile, cuda, (pt, py, xf, rel))
                    for f in evaluate(pkgs, kb):
                        if f.issue.scope == "packages":
                            problems.append(
                                f"{f.id} ({f.detail}) matches profile {profile.name} CUDA {cuda} "
                                f"with pytorch {pt.version}, python {py}, xformers {xf.version} "
                                f"and unsloth {rel.version}"
                            )
    return problems
