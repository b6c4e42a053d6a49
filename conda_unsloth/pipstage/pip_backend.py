"""The pip stage on the env's pip: ``pip install --dry-run --report`` resolves (the report
carries each wheel's url and sha256), ``pip install --no-deps --require-hashes`` installs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..solvers.base import PipPackage
from .failures import install_error, resolve_error
from .installers import Installer, child_env, run
from .requirements import hashed_line, redacted
from .wheelsources import Sources


class PipStage:
    def __init__(self, prefix: Path, inst: Installer, src: Sources, work: Path, cfile: Path):
        self.prefix, self.inst, self.src, self.work, self.cfile = prefix, inst, src, work, cfile
        self.env = child_env("pip", src)
        self.base = [inst.exe, "-m", "pip", "install", "--no-input", "--no-cache-dir"]

    def resolve(self, requirements: list[str], owned: dict[str, str]) -> list[PipPackage]:
        report = self.work / "report.json"
        reqs = self.work / "requirements.in"
        reqs.write_text("\n".join(requirements) + "\n")
        # not --quiet: pip names a conflict's causes only on stdout
        cmd = [*self.base, "--dry-run", "--report", str(report), "-c", str(self.cfile)]
        proc = run([*cmd, *self.src.pip_args(), "-r", str(reqs)], "pip stage", self.env, self.work)
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix, proc.stdout)
        return from_report(json.loads(report.read_text()))

    def install(self, locked: list[PipPackage], require_hashes: bool) -> list[PipPackage]:
        req = self.work / "requirements.txt"
        req.write_text("".join(hashed_line(p, [p.sha256] if p.sha256 else []) for p in locked))
        cmd = [
            *self.base,
            "--no-deps",
            "-c",
            str(self.cfile),
            *self.src.pip_args(),
            "-r",
            str(req),
        ]
        if all(p.sha256 for p in locked) or require_hashes:
            cmd.append("--require-hashes")
        proc = run(cmd, "pip stage", self.env, self.work)
        if proc.returncode != 0:
            raise install_error(proc.stderr, self.src, self.inst)
        return [redacted(p) for p in locked]


def from_report(report: dict[str, Any]) -> list[PipPackage]:
    out = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        info = item.get("download_info", {})
        archive = info.get("archive_info") or {}
        hashes = archive.get("hashes") or {}
        sha = hashes.get("sha256")
        legacy = archive.get("hash")  # pip < 23.1 writes only "hash": "sha256=HEX"
        if sha is None and isinstance(legacy, str) and legacy.startswith("sha256="):
            sha = legacy.removeprefix("sha256=")
        out.append(
            PipPackage(
                name=str(meta.get("name")),
                version=str(meta.get("version")),
                url=info.get("url"),
                sha256=sha,
                direct=bool(item.get("is_direct")),
            )
        )
    return out
