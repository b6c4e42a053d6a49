"""Selection helpers shared by the selection, spec and property tests: the knowledge base
(``KB``), every combination it allows (``COMBOS``) and the invariants a consistent stack
satisfies (:func:`check_invariants`).
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conda_unsloth import knowledge
from conda_unsloth.knowledge.rules import evaluate
from conda_unsloth.select import Selection

KB = knowledge.load()


def check_invariants(sel: Selection) -> None:
    p = sel.profile
    assert sel.cuda in sel.pytorch.cuda
    assert sel.python in sel.pytorch.python
    assert sel.python in sel.xformers.python
    assert sel.xformers.matches_pytorch(sel.pytorch.version)
    assert sel.xformers.known_issue is None
    assert Version(sel.python) in SpecifierSet(sel.unsloth.python)
    if sel.unsloth.companion_python:
        assert sel.python in sel.unsloth.companion_python
    assert Version(sel.pytorch.version) in SpecifierSet(sel.unsloth.requires["torch"])
    assert Version(sel.xformers.version) in SpecifierSet(sel.unsloth.requires["xformers"])
    # the pytorch build pin names this CUDA; a CPU build string can never match it
    assert sel.cuda.replace(".", "") in sel.pytorch_build.replace(".", "")
    assert "cpu" not in sel.pytorch_build
    if p.name == "pytorch":
        assert sel.xformers_build.endswith(f"_pyt{sel.pytorch.version}")
        assert sel.xformers_build.startswith(f"py{sel.python.replace('.', '')}_")
    else:
        assert sel.xformers_build.startswith(f"cuda_{sel.cuda.replace('.', '')}")
    findings = [f for f in evaluate(sel.planned_packages(), KB) if f.issue.scope == "packages"]
    assert findings == []


COMBOS = [
    (prof.name, cuda, py)
    for prof in KB.profiles.values()
    for cuda in prof.cudas
    for py in prof.pythons
]
