"""plugin.py is imported by conda on every command: it must import nothing heavy and must
tolerate a missing conda."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


def test_plugin_imports_nothing_heavy_without_conda() -> None:
    code = (
        "import sys, json; before = set(sys.modules); import conda_unsloth.plugin as p; "
        "new = sorted(set(sys.modules) - before); "
        "print(json.dumps({'new': new, 'hookimpl': p.hookimpl is not None}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    heavy = [
        m
        for m in doc["new"]
        if m.split(".")[0] in ("ruamel", "packaging", "rattler", "yaml", "json")
        or (m.startswith("conda_unsloth.") and m != "conda_unsloth.plugin")
    ]
    assert heavy == [], f"plugin.py imported {heavy}"
    # without conda the module registers nothing; with conda it has conda's hook marker
    assert doc["hookimpl"] is (importlib.util.find_spec("conda") is not None)


def test_subcommand_hook_with_real_conda() -> None:
    pytest.importorskip("conda")
    from conda_unsloth import plugin

    subs = list(plugin.conda_subcommands())  # type: ignore[attr-defined]
    assert [s.name for s in subs] == ["unsloth"]
