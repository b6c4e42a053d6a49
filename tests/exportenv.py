"""An installed env for the export tests (:func:`make_env`): conda-meta records from the
conda-forge, pytorch and xformers channels, pip dist-info folders (one with a direct_url.json)
and conda-unsloth's marker, with fixed hashes so exports can be checked line by line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CF = "https://conda.anaconda.org/conda-forge"
PT = "https://conda.anaconda.org/pytorch"
XF = "https://conda.anaconda.org/xformers"
SHA = {n: f"{i:x}" * 64 for i, n in enumerate(["libzlib", "python", "pytorch", "xformers"], 1)}
MD5 = {n: f"{i:x}" * 32 for i, n in enumerate(["libzlib", "python", "pytorch", "xformers"], 1)}
UNSLOTH_WHL = "https://files.pythonhosted.org/packages/aa/bb/unsloth-2024.9.post4-py3-none-any.whl"
TRL_WHL = "https://files.pythonhosted.org/packages/cc/dd/trl-0.12.2-py3-none-any.whl"


def meta(
    name: str,
    version: str,
    build: str,
    base: str,
    subdir: str,
    deps: list[str],
    ext: str = ".conda",
) -> dict[str, Any]:
    fn = f"{name}-{version}-{build}{ext}"
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": int(tail) if (tail := build.rsplit("_", 1)[-1]).isdigit() else 0,
        "channel": f"{base}/{subdir}",
        "subdir": subdir,
        "fn": fn,
        "url": f"{base}/{subdir}/{fn}",
        "md5": MD5[name],
        "sha256": SHA[name],
        "depends": deps,
        "constrains": [],
        "size": 1000,
        "timestamp": 1700000000000,
        "license": "BSD-3-Clause",
        "files": [],
        "requested_spec": name,
    }


def make_env(root: Path, zlib_url_base: str = CF) -> Path:
    prefix = root / "unsloth"
    cm = prefix / "conda-meta"
    cm.mkdir(parents=True)
    records = [
        meta("libzlib", "1.3.1", "hb9d3cd8_2", zlib_url_base, "linux-64", []),
        meta("python", "3.11.9", "hb806964_1_cpython", CF, "linux-64", ["libzlib >=1.3.1,<2.0a0"]),
        meta(
            "pytorch",
            "2.4.1",
            "py3.11_cuda12.1_cudnn9.1.0_0",
            PT,
            "linux-64",
            ["python >=3.11,<3.12.0a0", "libzlib >=1.3.1,<2.0a0"],
            ".tar.bz2",
        ),
        meta(
            "xformers",
            "0.0.28.post1",
            "py311_cu12.1.0_pyt2.4.1",
            XF,
            "linux-64",
            ["python >=3.11,<3.12", "pytorch 2.4.1"],
            ".tar.bz2",
        ),
    ]
    for r in records:
        (cm / (r["fn"].removesuffix(".conda").removesuffix(".tar.bz2") + ".json")).write_text(
            json.dumps(r)
        )
    sp = prefix / "lib" / "python3.11" / "site-packages"
    for name, version, extra in [
        ("unsloth", "2024.9.post4", None),
        ("trl", "0.12.2", {"url": TRL_WHL, "archive_info": {"hashes": {"sha256": "e" * 64}}}),
        ("peft", "0.14.0", None),
    ]:
        d = sp / f"{name}-{version}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (d / "INSTALLER").write_text("pip\n")
        if extra:
            (d / "direct_url.json").write_text(json.dumps(extra))
    marker = {
        "schema": 1,
        "tool": "conda-unsloth",
        "status": "ok",
        "profile": "pytorch",
        "solver": "rattler 0.28.0",
        "channels": [PT, "https://conda.anaconda.org/nvidia", XF, CF],
        "target": {
            "platform": "linux-64",
            "cuda": "12.1",
            "virtual_packages": ["__cuda=12.1=0", "__glibc=2.28=0"],
        },
        "pip": [
            {"name": "unsloth", "version": "2024.9.post4", "url": UNSLOTH_WHL, "sha256": "f" * 64}
        ],
    }
    (cm / "conda-unsloth").write_text(json.dumps(marker))
    return prefix
