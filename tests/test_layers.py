"""The package's shape, checked on its source: no import cycles between modules (imports
under ``if TYPE_CHECKING`` are for type checkers only and do not count), the core never
imports ``cli/``, ``conda/`` or conda itself, and ``plugin.py`` (imported by every conda
command) imports nothing of ours at module level."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "conda_unsloth"
EDGE = (
    "conda_unsloth.cli",
    "conda_unsloth.conda",
    "conda_unsloth.plugin",
    "conda_unsloth.__main__",
)


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.with_suffix("").relative_to(PACKAGE.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _runtime_imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """module -> line of every import ``name`` makes at run time (module level or lazily)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING":
            typing_only.update(id(x) for sub in n.body for x in ast.walk(sub))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            out.setdefault(t, node.lineno)
    return out


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {m: _runtime_imports(m, f, modules) for m, f in modules.items()}


def test_no_import_cycles() -> None:
    graph = {m: {t for t in deps if t in _modules() and t != m} for m, deps in _graph().items()}
    cycles = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*path[path.index(t) :], t]))
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_core_never_imports_cli_conda_or_conda() -> None:
    bad = []
    for m, deps in _graph().items():
        if m.startswith(EDGE):
            continue
        for t, line in deps.items():
            if t.startswith(EDGE) or t == "conda" or t.startswith(("conda.", "libmambapy")):
                bad.append(f"{m}:{line} imports {t}")
    assert bad == []


def test_plugin_imports_nothing_of_ours_at_module_level() -> None:
    tree = ast.parse((PACKAGE / "plugin.py").read_text())
    ours = [
        n.lineno
        for n in tree.body
        if isinstance(n, ast.ImportFrom)
        and (n.level or (n.module or "").startswith("conda_unsloth"))
    ]
    assert ours == []


def test_no_module_is_over_600_lines() -> None:
    """One module per concept (issue 15): none over 600 lines. verify/probe.py is the one
    exception: a standalone script that --sbatch embeds whole in the job."""
    pkg = Path(__file__).resolve().parent.parent / "conda_unsloth"
    long = {
        str(f.relative_to(pkg)): n
        for f in pkg.rglob("*.py")
        if (n := len(f.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {"verify/probe.py": long.get("verify/probe.py", 0)}, long
    assert long["verify/probe.py"] > 600  # still the exception (drop it here when it is not)
