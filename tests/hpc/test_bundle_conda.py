"""Bundles inside a real conda (the conda lane): an env conda made from a network channel (its
package files are in conda's package cache, nothing else has them) is bundled by
`conda unsloth export --format bundle` and recreated by `conda unsloth create --from-bundle`
with an empty package cache and no network (a network namespace, where possible): conda's own
`conda list --explicit --md5` and our explicit export are the source env's, line for line."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.channels import serve
from tests.conda import realconda
from tests.conftest import CondaSandbox
from tests.hpc.bundles import copy_demo, netns_problem

pytestmark = pytest.mark.conda


@pytest.fixture
def sandbox(tmp_path: Path) -> CondaSandbox:
    """The sandbox tests/conftest._conda_isolated made for this conda test."""
    box = CondaSandbox(tmp_path / "_conda")
    assert box.condarc.exists(), "only for tests marked conda"
    return box


def test_a_conda_env_from_a_network_channel_is_recreated_offline_by_its_bundle(
    sandbox: CondaSandbox, demo: Path, tmp_path: Path
) -> None:
    mine = copy_demo(demo, tmp_path / "demo")
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "unsloth.tar"
    with serve(mine) as base:
        r = realconda.conda(
            sandbox, "unsloth", "create", "-p", str(src), "-c", f"{base}/channel",
            "--pip-find-links", str(mine / "wheels"), "--cuda", "12.1", "--yes",
        )  # fmt: skip
        assert r.code == 0, r
    shutil.rmtree(mine / "channel")  # gone: the package files are in conda's cache only
    assert (sandbox.pkgs / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2").is_file()
    r = realconda.conda(sandbox, "unsloth", "export", "-p", str(src), "--format", "bundle",
                        "-o", str(out))  # fmt: skip
    assert r.code == 0, r
    assert "bundle: 9 conda packages, 8 wheels" in r.out
    conda_list = realconda.conda(sandbox, "list", "-p", str(src), "--explicit", "--md5")
    ours = realconda.conda(sandbox, "unsloth", "export", "-p", str(src), "--format", "explicit")
    assert conda_list.code == 0 and ours.code == 0
    assert f"{base}/channel/linux-64/pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2#" in (
        conda_list.out
    )

    shutil.rmtree(mine)  # the other machine has neither the wheels nor a package cache
    fresh = tmp_path / "pkgs-on-the-other-machine"
    argv = [sys.executable, "-m", "conda", "unsloth", "create", "-p", str(dest),
            "--from-bundle", str(out), "--yes"]  # fmt: skip
    if netns_problem() is None:
        argv = ["unshare", "-n", *argv]
    r = realconda.run(argv, sandbox, env={"CONDA_PKGS_DIRS": str(fresh)})
    assert r.code == 0, r
    assert f"created {dest} (9 conda + 8 pip packages" in r.out
    assert (fresh / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0").is_dir()  # from the bundle
    again_list = realconda.conda(sandbox, "list", "-p", str(dest), "--explicit", "--md5")
    again_ours = realconda.conda(sandbox, "unsloth", "export", "-p", str(dest), "--format",
                                 "explicit")  # fmt: skip
    assert again_list.out == conda_list.out
    assert again_ours.out == ours.out
    assert os.path.isfile(dest / "bin" / "python")
