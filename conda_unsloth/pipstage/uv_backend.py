"""The pip stage on uv: ``uv pip install --dry-run --output-format json`` resolves, the
wheels and their sha256 come from the find-links folders or ``uv pip compile --format
pylock.toml``, ``uv pip install --no-deps --require-hashes`` installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import InstallError
from ..solvers.base import PipPackage
from .dists import dir_name, headers, norm, site_packages
from .failures import install_error, resolve_error
from .installers import Installer, child_env, run
from .requirements import hashed_line, redacted
from .wheelsources import Sources


class UvStage:
    def __init__(self, prefix: Path, inst: Installer, src: Sources, work: Path, cfile: Path):
        from ..cache import cache_dir

        self.prefix, self.inst, self.src, self.work, self.cfile = prefix, inst, src, work, cfile
        self.env = child_env("uv", src)
        self.common = [
            "--no-config",
            "--cache-dir",
            str(cache_dir("uv")),
            "--python",
            str(prefix / "bin" / "python"),
            "--color",
            "never",
            "--no-progress",
            "--quiet",
            "--no-python-downloads",
        ]
        self.wheels: dict[str, list[dict[str, Any]]] = {}

    def _uv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.inst.exe, "pip", *args], "pip stage (uv)", self.env, self.work)

    def resolve(self, requirements: list[str], owned: dict[str, str]) -> list[PipPackage]:
        reqs = self.work / "requirements.in"
        reqs.write_text("\n".join(requirements) + "\n")
        proc = self._uv(
            "install", *self.common, "--dry-run", "--output-format", "json",
            "-c", str(self.cfile), *self.src.uv_args(), "-r", str(reqs),
        )  # fmt: skip
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix)
        try:
            changes = json.loads(proc.stdout)["changes"]
            plan = [(str(c["name"]), str(c["version"]), str(c["action"])) for c in changes]
        except (ValueError, KeyError, TypeError):
            raise InstallError(
                f"uv {self.inst.version} answered the dry run in a form this conda-unsloth does "
                f"not read: {proc.stdout[:200]!r}",
                hints=["--pip-installer pip uses the env's pip instead"],
            ) from None
        for name, version, action in plan:
            if action != "installed" and norm(name) in owned:
                new = [v for n, v, a in plan if norm(n) == norm(name) and a == "installed"]
                raise InstallError(
                    f"pip would replace conda's {name} {owned[norm(name)]} with {name} "
                    f"{new[0] if new else '(nothing)'}; refusing (F12)",
                    hints=[
                        "a pip requirement pins another build of a conda package; "
                        "check `conda unsloth env --json` for the companions"
                    ],
                )
            if action != "installed":
                verb = {"uninstalled": "remove", "reinstalled": "reinstall"}.get(action, action)
                raise InstallError(f"the pip stage would {verb} {name} {version}; refusing")
        wanted = [PipPackage(n, v) for n, v, a in plan if a == "installed"]
        if not wanted or any(norm(p.name) in owned for p in wanted):
            return wanted  # empty, or a clash the caller refuses with the F12 message
        return self._locate_local(wanted) or self._locate(wanted)

    def _locate_local(self, wanted: list[PipPackage]) -> list[PipPackage] | None:
        """Offline (or with no index), when every pinned package has exactly one file in the
        find-links folders, that file is the one uv installs: its url and sha256 come from
        the folder (the install step checks the hash) and a uv call is saved. None: ask uv."""
        if not (self.src.offline or self.src.no_index) or not self.src.find_links:
            return None
        from packaging.utils import (
            InvalidSdistFilename,
            InvalidWheelFilename,
            parse_sdist_filename,
            parse_wheel_filename,
        )
        from packaging.version import Version

        found: dict[tuple[str, Version], list[Path]] = {}
        for entry in self.src.find_links:
            folder = Path(entry[len("file://") :] if entry.startswith("file://") else entry)
            if not folder.is_dir():
                return None
            for f in folder.iterdir():
                try:
                    if f.name.endswith(".whl"):
                        name, version, _, _ = parse_wheel_filename(f.name)
                    else:
                        name, version = parse_sdist_filename(f.name)
                except (InvalidWheelFilename, InvalidSdistFilename):
                    continue
                found.setdefault((str(name), version), []).append(f)
        out = []
        for p in wanted:
            files = found.get((norm(p.name), Version(p.version)), [])
            if len(files) != 1 or not files[0].name.endswith(".whl"):
                return None  # several builds of it (or an sdist): uv decides
            url, sha = files[0].resolve().as_uri(), _sha256(files[0])
            self.wheels[norm(p.name)] = [{"url": url, "hashes": {"sha256": sha}}]
            out.append(PipPackage(p.name, p.version, url, sha))
        return out

    def _locate(self, wanted: list[PipPackage]) -> list[PipPackage]:
        """The wheel (url, sha256) of each pinned package, from the same sources."""
        pinned = self.work / "pinned.in"
        pinned.write_text("".join(f"{p.name}=={p.version}\n" for p in wanted))
        proc = self._uv(
            "compile", *self.common, "--no-deps", "--format", "pylock.toml", "--no-header",
            "-c", str(self.cfile), *self.src.uv_args(), str(pinned),
        )  # fmt: skip
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix)
        lock = _toml(proc.stdout)
        out = []
        for item in lock.get("packages", []):
            name, version = str(item["name"]), str(item["version"])
            files = list(item.get("wheels") or [])
            if not files and item.get("sdist"):
                files = [item["sdist"]]
            self.wheels[norm(name)] = files
            hashes = [str((f.get("hashes") or {}).get("sha256") or "") for f in files]
            out.append(
                PipPackage(
                    name,
                    version,
                    str(files[0]["url"]) if len(files) == 1 else None,
                    hashes[0] if len(files) == 1 and hashes[0] else None,
                )
            )
        return out

    def install(self, locked: list[PipPackage], require_hashes: bool) -> list[PipPackage]:
        lines = []
        for p in locked:
            files = self.wheels.get(norm(p.name))
            hashes = [
                str(f["hashes"]["sha256"])
                for f in files or []
                if (f.get("hashes") or {}).get("sha256")
            ]
            if files is None or len(hashes) != len(files):
                hashes = [p.sha256] if p.sha256 else []
            lines.append(hashed_line(p, hashes))
        req = self.work / "requirements.txt"
        req.write_text("".join(lines))
        hashed = all("--hash=" in line for line in lines)
        args = ["install", *self.common, "--no-deps", "-c", str(self.cfile), *self.src.uv_args()]
        if hashed or require_hashes:
            args.append("--require-hashes")
        proc = self._uv(*args, "-r", str(req))
        if proc.returncode != 0:
            raise install_error(proc.stderr, self.src, self.inst)
        if not self.wheels:  # a lock: its own urls and hashes
            return [redacted(p) for p in locked]
        return [redacted(p) for p in self._which_wheels(locked)]

    def _which_wheels(self, locked: list[PipPackage]) -> list[PipPackage]:
        """Which of a version's listed files was installed: the one whose file name carries the
        installed WHEEL's tags (the name as the installed METADATA spells it)."""
        site = site_packages(self.prefix)
        by_norm = {norm(p.name): p for p in locked}
        found: dict[str, PipPackage] = {}
        for d in site.iterdir():
            if not d.name.endswith(".dist-info") or norm(dir_name(d.name)) not in by_norm:
                continue
            meta = headers(d / "METADATA")
            key = norm(meta.get("Name", [dir_name(d.name)])[0])
            p = by_norm.get(key)
            if p is None:
                continue
            files = self.wheels.get(key) or []
            tags = set(headers(d / "WHEEL").get("Tag", []))
            chosen = (
                [f for f in files if _file_tags(str(f["url"])) == tags]
                if len(files) > 1
                else files
            )
            url = str(chosen[0]["url"]) if len(chosen) == 1 else p.url
            sha = (chosen[0].get("hashes") or {}).get("sha256") if len(chosen) == 1 else p.sha256
            name = meta.get("Name", [p.name])[0]
            found[key] = PipPackage(name, meta.get("Version", [p.version])[0], url, sha)
        return [found.get(norm(p.name), p) for p in locked]


def _sha256(path: Path) -> str:
    from ..userfiles import file_digest

    return file_digest(path, "sha256")


def _toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the [uv] extra brings tomli
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except ValueError as exc:
        raise InstallError(f"uv's pylock output cannot be read: {exc}") from None
    return doc


def _file_tags(url: str) -> set[str]:
    stem = url.rsplit("/", 1)[-1]
    if not stem.endswith(".whl"):
        return set()
    parts = stem[: -len(".whl")].split("-")
    if len(parts) < 5:
        return set()
    py, abi, plat = parts[-3:]
    return {f"{x}-{y}-{z}" for x in py.split(".") for y in abi.split(".") for z in plat.split(".")}
