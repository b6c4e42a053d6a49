"""plugin.py is imported by conda on every command: it must import nothing heavy and must
tolerate a missing conda."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


def test_plugin_imports_nothing_heavy() -> None:
    """Inside conda, conda's own modules are already loaded when our plugin module is imported:
    load them first (when conda exists), then check what importing the plugin adds."""
    code = (
        "import sys, json\n"
        "try:\n    import conda.plugins, conda.plugins.types\nexcept ImportError:\n    pass\n"
        "before = set(sys.modules)\n"
        "import conda_unsloth.plugin as p\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'hookimpl': p.hookimpl is not None}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    assert set(doc["new"]) <= {"__future__", "conda_unsloth", "conda_unsloth.plugin"}, doc["new"]
    # without conda the module registers nothing; with conda it has conda's hook marker
    assert doc["hookimpl"] is (importlib.util.find_spec("conda") is not None)


@pytest.mark.conda
def test_subcommand_hook_with_real_conda() -> None:
    from conda_unsloth import plugin

    subs = list(plugin.conda_subcommands())
    assert [s.name for s in subs] == ["unsloth"]
