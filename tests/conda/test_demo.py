"""The README's offline demo, both ways, as a new user runs it (same channel, same wheels, same
arguments):

    python -m tests.envbuild /tmp/demo
    conda unsloth create -p /tmp/demo-env -c file:///tmp/demo/channel --offline \\
        --pip-find-links /tmp/demo/wheels --cuda 12.1 --yes          # inside conda: libmamba
    conda-unsloth create -p /tmp/demo-env2 -c file:///tmp/demo/channel --offline \\
        --pip-find-links /tmp/demo/wheels --cuda 12.1 --yes          # standalone: py-rattler

Both from an empty cache; both give the same packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conda import realconda
from tests.conftest import CondaSandbox

pytestmark = pytest.mark.conda


def test_offline_demo_inside_conda_and_standalone(sandbox: CondaSandbox, demo: Path) -> None:
    inside = sandbox.root / "demo-env"
    alone = sandbox.root / "demo-env2"
    r1 = realconda.conda(sandbox, "unsloth", *realconda.create_args(demo, inside))
    assert r1.code == 0, r1
    assert "libmamba (conda " in (inside / "conda-meta" / "conda-unsloth").read_text()
    r2 = realconda.standalone(sandbox, *realconda.create_args(demo, alone))
    assert r2.code == 0, r2
    assert "rattler " in (alone / "conda-meta" / "conda-unsloth").read_text()
    for r, prefix in ((r1, inside), (r2, alone)):
        assert (
            f"created {prefix} (9 conda + 8 pip packages (7 requested + 1 dependency), verification: skipped)"
            in r.out
        ), r
        assert f"next: conda activate {prefix}" in r.out or (
            r is r2 and f"next: {prefix}/bin/python" in r.out  # no conda on this PATH
        )
    assert realconda.records(inside) == realconda.records(alone)
    assert realconda.pip_dists(inside) == realconda.pip_dists(alone)
    assert len(realconda.pip_dists(inside)) == 8
