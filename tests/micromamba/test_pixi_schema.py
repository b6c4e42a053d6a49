"""Every pixi.toml `conda unsloth env --for pixi` writes is valid against pixi's published
manifest schema (pixi itself is not installable here: docs/tools.md).

The schema is pixi's ``schema/schema.json`` (v0.77.0, BSD-3-Clause), kept beside the checkout in
``../shared/pixi/schema.json`` (``$SHARED_DIR``; ``$CONDA_UNSLOTH_PIXI_SCHEMA`` names another
copy), never in this repository. Where it or ``jsonschema`` is missing the test skips, naming
the micromamba lane; in that lane it must run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import knowledge, spec
from conda_unsloth.exports import pixi
from conda_unsloth.host import Host
from conda_unsloth.select import Request, select
from tests.micromamba import fixture

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

KB = knowledge.load()
PAIRS = [(p.name, c) for p in KB.profiles.values() for c in p.cudas]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    path = Path(
        os.environ.get("CONDA_UNSLOTH_PIXI_SCHEMA")
        or fixture.shared_dir() / "pixi" / "schema.json"
    )
    if not path.is_file():  # pixi's own file, never in this repository (the lane leaves
        # this module out when ../shared has none, saying so)
        pytest.skip(
            f"needs pixi's manifest schema ({path}): set CONDA_UNSLOTH_PIXI_SCHEMA=FILE "
            "(pixi's schema/schema.json, v0.77.0)"
        )
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["$id"].startswith("https://pixi.sh/v"), doc["$id"]
    return doc


def validator(schema: dict[str, Any]) -> Any:
    try:
        import jsonschema
    except ImportError:
        fixture.need("jsonschema (PyPI)")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize(("profile", "cuda"), PAIRS, ids=[f"{p}-{c}" for p, c in PAIRS])
def test_pixi_toml_is_valid_against_pixis_schema(
    profile: str, cuda: str, schema: dict[str, Any]
) -> None:
    sel = select(Request(profile=profile, cuda=cuda), Host(platform="linux-64"), KB)
    env = spec.from_selection(sel, None, "pixi")
    doc = tomllib.loads(pixi.render(sel, env))
    errors = sorted(validator(schema).iter_errors(doc), key=str)
    assert errors == [], [e.message for e in errors]


def test_the_schema_catches_a_mistake(schema: dict[str, Any]) -> None:
    """A misspelt key in a dependency table, and pixi's `no-index` that does not exist, are
    refused: the validation can fail."""
    sel = select(Request(cuda="12.1"), Host(platform="linux-64"), KB)
    doc = tomllib.loads(pixi.render(sel, spec.from_selection(sel, None, "pixi")))
    doc["dependencies"]["pytorch"]["buildd"] = doc["dependencies"]["pytorch"].pop("build")
    assert list(validator(schema).iter_errors(doc))
    doc = tomllib.loads(pixi.render(sel, spec.from_selection(sel, None, "pixi")))
    doc["pypi-options"] = {"no-index": True}
    assert list(validator(schema).iter_errors(doc))
