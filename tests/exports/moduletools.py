"""Helpers for the modulefile tests: a fake installed prefix (:func:`make_prefix`) and the real
module tools (:func:`lmod_cmd`, :func:`tcl_cmd`; each skips the test when its tool is absent).

The tools come from Debian's ``lmod`` and ``environment-modules`` packages
(``scripts/install-hpc-tools.sh`` installs both). The prefix holds conda-meta records copied
from a real pytorch channel install, activation scripts, ``conda-meta/state`` variables and an
awkward directory name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

LMOD_CANDIDATES = ("/usr/share/lmod/lmod/libexec/lmod", "/opt/apps/lmod/lmod/libexec/lmod")
TCL_CANDIDATES = (
    "/opt/conda-unsloth-ci/environment-modules/usr/lib/x86_64-linux-gnu/modulecmd.tcl",
    "/usr/lib/x86_64-linux-gnu/modulecmd.tcl",
    "/usr/share/Modules/libexec/modulecmd.tcl",
)
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"

RECORDS = {
    "python-3.11.9-hb806964_1_cpython": {
        "name": "python",
        "version": "3.11.9",
        "build": "hb806964_1_cpython",
        "build_number": 1,
        "channel": "https://conda.anaconda.org/conda-forge/linux-64",
        "subdir": "linux-64",
        "fn": "python-3.11.9-hb806964_1_cpython.conda",
        "url": "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_1_cpython.conda",
        "md5": "ac68acfa8b558ed406c75e98d3428d7b",
        "depends": ["bzip2 >=1.0.8,<2.0a0", "libgcc-ng >=12", "openssl >=3.2.1,<4.0a0"],
    },
    "pytorch-2.4.1-py3.11_cuda12.1_cudnn9.1.0_0": {
        "name": "pytorch",
        "version": "2.4.1",
        "build": "py3.11_cuda12.1_cudnn9.1.0_0",
        "build_number": 0,
        "channel": "https://conda.anaconda.org/pytorch/linux-64",
        "subdir": "linux-64",
        "fn": "pytorch-2.4.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2",
        "url": "https://conda.anaconda.org/pytorch/linux-64/pytorch-2.4.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2",
        "depends": [
            "pytorch-cuda >=12.1,<12.2",
            "pytorch-mutex 1.0 cuda",
            "python >=3.11,<3.12.0a0",
        ],
    },
    "pytorch-cuda-12.1-ha16c6d3_6": {
        "name": "pytorch-cuda",
        "version": "12.1",
        "build": "ha16c6d3_6",
        "build_number": 6,
        "channel": "https://conda.anaconda.org/pytorch/noarch",
        "subdir": "noarch",
        "fn": "pytorch-cuda-12.1-ha16c6d3_6.tar.bz2",
        "url": "https://conda.anaconda.org/pytorch/noarch/pytorch-cuda-12.1-ha16c6d3_6.tar.bz2",
        "depends": ["cuda-libraries >=12.1,<12.2"],
    },
    "xformers-0.0.28.post1-py311_cu12.1.0_pyt2.4.1": {
        "name": "xformers",
        "version": "0.0.28.post1",
        "build": "py311_cu12.1.0_pyt2.4.1",
        "build_number": 0,
        "channel": "https://conda.anaconda.org/xformers/linux-64",
        "subdir": "linux-64",
        "fn": "xformers-0.0.28.post1-py311_cu12.1.0_pyt2.4.1.tar.bz2",
        "url": "https://conda.anaconda.org/xformers/linux-64/xformers-0.0.28.post1-py311_cu12.1.0_pyt2.4.1.tar.bz2",
        "depends": ["python >=3.11,<3.12", "pytorch 2.4.1", "pytorch-cuda 12.1.*"],
    },
}
ACTIVATE_10 = (
    'export UNSLOTH_T_HOME="$CONDA_PREFIX/share/cuda"\nexport UNSLOTH_T_FIRST="one two"\n'
)
ACTIVATE_20 = 'export UNSLOTH_T_ORDER="${UNSLOTH_T_FIRST:-missing}-then-20"\n'
STATE = {"env_vars": {"UNSLOTH_T_STATE": "from conda-meta/state"}}


def make_prefix(root: Path, dirname: str = "unsloth env 2024.9") -> Path:
    """A fake installed env: bin/, conda-meta records, activate.d scripts, state variables,
    and unsloth installed by pip (a dist-info folder)."""
    prefix = root / dirname
    (prefix / "bin").mkdir(parents=True)
    meta = prefix / "conda-meta"
    meta.mkdir()
    for stem, rec in RECORDS.items():
        (meta / f"{stem}.json").write_text(json.dumps(rec))
    (meta / "history").write_text("==> 2024-09-01 <==\n")
    (meta / "state").write_text(json.dumps(STATE))
    act = prefix / "etc" / "conda" / "activate.d"
    act.mkdir(parents=True)
    (act / "20-order.sh").write_text(ACTIVATE_20)
    (act / "10-cuda.sh").write_text(ACTIVATE_10)
    (act / "10-cuda.csh").write_text("setenv UNSLOTH_T_CSH yes\n")
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "unsloth-2024.9.post4.dist-info").mkdir(parents=True)
    return prefix


def _find(env: str, candidates: tuple[str, ...]) -> str | None:
    for c in (os.environ.get(env, ""), *candidates):
        if c and Path(c).is_file():
            return c
    return None


def lmod_cmd() -> str:
    cmd = _find("CONDA_UNSLOTH_LMOD_CMD", LMOD_CANDIDATES)
    if cmd is None:
        pytest.skip("Lmod not installed (run scripts/install-hpc-tools.sh)")
    return cmd


def tcl_cmd() -> str:
    cmd = _find("CONDA_UNSLOTH_MODULECMD_TCL", TCL_CANDIDATES)
    if cmd is None or shutil.which("tclsh") is None:
        pytest.skip(
            "Environment Modules modulecmd.tcl / tclsh not installed "
            "(run scripts/install-hpc-tools.sh)"
        )
    return cmd
