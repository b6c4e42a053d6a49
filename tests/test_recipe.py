"""recipe/recipe.yaml stays in step with pyproject.toml: same version, same console entry
point, the same Python dependencies (plus conda and conda-libmamba-solver, which are not on
PyPI). Rendered with py-rattler-build when it is installed (``pip install py-rattler-build``;
rendering works offline, a full build needs a conda channel)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipe" / "recipe.yaml"


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        data: dict[str, Any] = tomllib.load(fh)
    project: dict[str, Any] = data["project"]
    return project


def console_scripts() -> list[str]:
    return [f"{k} = {v}" for k, v in pyproject()["scripts"].items()]


def _norm(req: str) -> tuple[str, str]:
    """'ruamel.yaml>=0.17' / 'ruamel.yaml >=0.17' -> ('ruamel.yaml', '>=0.17')."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def _plain_yaml() -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load(RECIPE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    rb = pytest.importorskip(
        "rattler_build", reason="py-rattler-build not installed (pip install py-rattler-build)"
    )
    variants = rb.Stage0Recipe.from_file(str(RECIPE)).render()
    assert len(variants) == 1  # noarch: python renders exactly one variant
    out: dict[str, Any] = variants[0].recipe.to_dict()
    return out


def test_rendered_version_matches_pyproject(rendered: dict[str, Any]) -> None:
    assert rendered["package"]["name"] == pyproject()["name"]
    assert rendered["package"]["version"] == pyproject()["version"]


def test_rendered_entry_points_match_pyproject(rendered: dict[str, Any]) -> None:
    assert rendered["build"]["python"]["entry_points"] == console_scripts()


def test_rendered_is_noarch_python_with_python_floor(rendered: dict[str, Any]) -> None:
    build = rendered["build"]
    assert build["noarch"] == "python"
    assert build["string"].startswith("pyh")
    floor = pyproject()["requires-python"]  # ">=3.10"
    assert f"python {floor}" in rendered["requirements"]["run"]
    assert f"python {floor.removeprefix('>=')}.*" in rendered["requirements"]["host"]


def test_rendered_run_requirements_cover_pyproject(rendered: dict[str, Any]) -> None:
    run = dict(_norm(r) for r in rendered["requirements"]["run"])
    for dep in pyproject()["dependencies"]:
        name, spec = _norm(dep)
        assert run.get(name) == spec, f"{dep} from pyproject missing or different in recipe"
    assert run["conda"] == ">=26.1"
    assert "conda-libmamba-solver" in run
    constraints = dict(_norm(r) for r in rendered["requirements"]["run_constraints"])
    rattler = dict(_norm(d) for d in pyproject()["optional-dependencies"]["rattler"])
    assert constraints == rattler


def test_rendered_tests_import_help_and_pip_check(rendered: dict[str, Any]) -> None:
    tests = rendered["tests"]
    py = next(t["python"] for t in tests if "python" in t)
    assert "conda_unsloth" in py["imports"]
    assert py.get("pip_check", True) is True  # rattler-build's default is true
    scripts = [s for t in tests if "script" in t for s in t["script"]]
    assert "conda unsloth --help" in scripts


# ----------------------------------------------------------------------------- no renderer needed


def test_recipe_source_yaml_matches_pyproject() -> None:
    """The same checks on the unrendered YAML, for machines without py-rattler-build."""
    data = _plain_yaml()
    assert data["schema_version"] == 1
    assert data["context"]["version"] == pyproject()["version"]
    assert data["package"] == {"name": "${{ name }}", "version": "${{ version }}"}
    assert data["context"]["name"] == pyproject()["name"]
    assert data["build"]["noarch"] == "python"
    assert data["build"]["python"]["entry_points"] == console_scripts()
    assert data["context"]["python_min"] == pyproject()["requires-python"].removeprefix(">=")
    assert set(data) <= {
        "schema_version",
        "context",
        "package",
        "source",
        "build",
        "requirements",
        "tests",
        "about",
        "extra",
    }
    assert data["about"]["license"] == pyproject()["license"]
