"""A corpus of bad inputs across every verb: each must give a one-line error naming the problem,
a non-zero exit, no traceback, and leave the file system exactly as it was."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conda_unsloth import knowledge
from tests import prefixes as P
from tests.conftest import Result, tree

Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    says: str  # a fragment the error line must contain
    code: int = 2


def argv(*a: str) -> Setup:
    return lambda tmp: [x.replace("{tmp}", str(tmp)) for x in a]


def file_then(content: bytes | str, name: str, *a: str) -> Setup:
    def setup(tmp: Path) -> list[str]:
        p = tmp / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return [x.replace("{file}", str(p)).replace("{tmp}", str(tmp)) for x in a]

    return setup


def kb_then(old: str, new: str, file: str = "compat.yaml") -> Setup:
    def setup(tmp: Path) -> list[str]:
        d = tmp / "kb"
        d.mkdir()
        for f in knowledge.FILES:
            shutil.copy(Path(knowledge.default_dir()) / f, d / f)
        if old == "<delete>":
            (d / file).unlink()
        else:
            (d / file).write_text((d / file).read_text().replace(old, new, 1))
        return ["env", "--knowledge", str(d), "-o", str(tmp / "e.yml")]

    return setup


def prefix_then(kind: str, verb: str) -> Setup:
    def setup(tmp: Path) -> list[str]:
        p = tmp / "env"
        if kind == "file":
            p.write_text("not an env")
        elif kind == "not-env":
            (p / "lib").mkdir(parents=True)
        elif kind == "corrupt-record":
            P.write_prefix(p, P.healthy())
            rec = next((p / "conda-meta").glob("pytorch-*.json"))
            rec.write_text(rec.read_text()[:40])
        elif kind == "record-not-object":
            P.write_prefix(p, P.healthy())
            next((p / "conda-meta").glob("python-*.json")).write_text("[1, 2]")
        extra = {
            "module": ["unsloth/x", "-o", str(tmp / "mods")],
            "export": ["--format", "explicit", "-o", str(tmp / "x.txt")],
        }
        return [verb, "-p", str(p), *extra.get(verb, [])]

    return setup


def lock_then(content: str | bytes) -> Setup:
    return file_then(
        content, "lock.txt", "create", "-p", "{tmp}/env", "--from-lock", "{file}", "--yes"
    )


SHA = "a" * 64
EXPLICIT_OK_LINE = (
    f"https://conda.anaconda.org/conda-forge/linux-64/python-3.11.7-h0_0_cpython.conda#{SHA}"
)

CASES = [
    # --- CLI values
    Case("cuda-12.x", argv("env", "--cuda", "12.x", "-o", "{tmp}/e.yml"), "is not a CUDA version"),
    Case("cuda-99", argv("env", "--cuda", "99", "-o", "{tmp}/e.yml"), "is not a CUDA version"),
    Case("cuda-empty", argv("env", "--cuda", "", "-o", "{tmp}/e.yml"), "is not a CUDA version"),
    Case("cuda-unoffered", argv("env", "--cuda", "11.7", "-o", "{tmp}/e.yml"), "not offered"),
    Case("python-2.7", argv("env", "--python", "2.7", "-o", "{tmp}/e.yml"), "not supported"),
    Case(
        "python-word",
        argv("env", "--python", "latest", "-o", "{tmp}/e.yml"),
        "is not a Python version",
    ),
    Case("torch-unknown", argv("env", "--torch", "9.9.9", "-o", "{tmp}/e.yml"), "is not built"),
    Case("torch-seed", argv("env", "--torch", "2.3.1", "-o", "{tmp}/e.yml"), "F1"),
    Case("xformers-seed", argv("env", "--xformers", "0.0.27.post1", "-o", "{tmp}/e.yml"), "F1"),
    Case(
        "profile-unknown",
        argv("env", "--profile", "defaults", "-o", "{tmp}/e.yml"),
        "is not a profile",
    ),
    Case(
        "arch-word",
        argv("env", "--gpu-arch", "hopper", "-o", "{tmp}/e.yml"),
        "is not a compute capability",
    ),
    Case(
        "arch-control-char",
        argv("env", "--gpu-arch", "9.0\n", "-o", "{tmp}/e.yml"),
        "is not a compute capability",
    ),
    Case(
        "platform-osx",
        argv("env", "--platform", "osx-arm64", "-o", "{tmp}/e.yml"),
        "linux-64 only",
    ),
    Case(
        "unsloth-unknown",
        argv("env", "--unsloth", "1.0", "-o", "{tmp}/e.yml"),
        "not in the knowledge base",
    ),
    Case("unknown-flag", argv("env", "--colour"), "unrecognized arguments"),
    Case("flag-without-value", argv("env", "--cuda"), "expected one argument"),
    Case("unknown-verb", argv("frobnicate"), "invalid choice"),
    Case(
        "name-and-prefix", argv("doctor", "-n", "a", "-p", "{tmp}/b"), "not allowed with argument"
    ),
    Case("bad-env-name", argv("create", "-n", "a/b", "--yes"), "is not a valid environment name"),
    Case("blackwell-pytorch", argv("env", "--gpu-arch", "12.0", "-o", "{tmp}/e.yml"), "sm_120"),
    # --- environment.yml files (create -f)
    Case(
        "envyml-syntax",
        file_then(
            "dependencies: [python\n",
            "e.yml",
            "create",
            "-p",
            "{tmp}/env",
            "-f",
            "{file}",
            "--yes",
        ),
        "YAML syntax error",
    ),
    Case(
        "envyml-wrong-type",
        file_then(
            "dependencies: python\n", "e.yml", "create", "-p", "{tmp}/env", "-f", "{file}", "--yes"
        ),
        "must be a non-empty list",
    ),
    Case(
        "envyml-unknown-key",
        file_then(
            "dependencies: [python]\nchanel: [x]\n",
            "e.yml",
            "create",
            "-p",
            "{tmp}/env",
            "-f",
            "{file}",
            "--yes",
        ),
        "unknown key",
    ),
    Case(
        "envyml-huge",
        file_then(
            "# x\n" * 300_000, "e.yml", "create", "-p", "{tmp}/env", "-f", "{file}", "--yes"
        ),
        "refusing files over 1 MB",
    ),
    Case(
        "envyml-not-utf8",
        file_then(
            b"name: \xff\xfe\n", "e.yml", "create", "-p", "{tmp}/env", "-f", "{file}", "--yes"
        ),
        "not UTF-8",
    ),
    Case(
        "envyml-empty",
        file_then("", "e.yml", "create", "-p", "{tmp}/env", "-f", "{file}", "--yes"),
        "expected a mapping",
    ),
    Case(
        "envyml-missing",
        argv("create", "-p", "{tmp}/env", "-f", "{tmp}/nope.yml", "--yes"),
        "does not exist",
    ),
    Case(
        "envyml-missing-constraints",
        file_then(
            "dependencies:\n  - pip:\n      - -c gone.txt\n",
            "e.yml",
            "create",
            "-p",
            "{tmp}/env",
            "-f",
            "{file}",
            "--yes",
        ),
        "constraints file",
    ),
    # --- lock files (create --from-lock)
    Case(
        "lock-truncated-conda-lock",
        lock_then(
            "version: 1\nmetadata:\n  platforms: [linux-64]\npackage:\n  - name: python\n    url: "
        ),
        "has no platform",
    ),
    Case(
        "lock-wrong-platform",
        lock_then(f"# platform: osx-arm64\n@EXPLICIT\n{EXPLICIT_OK_LINE}\n"),
        "is for osx-arm64, not linux-64",
    ),
    Case(
        "lock-md5-only",
        lock_then("@EXPLICIT\nhttps://c.org/ch/linux-64/a-1-0.conda#" + "b" * 32 + "\n"),
        "has no sha256",
    ),
    Case("lock-not-a-url", lock_then(f"@EXPLICIT\nnot-a-package#{SHA}\n"), "is not a package URL"),
    Case("lock-garbage", lock_then(b"\x00\x01\x02garbage"), "YAML syntax error"),
    Case(
        "lock-yaml-not-lock",
        lock_then("just: yaml\n"),
        "neither an @EXPLICIT file nor a conda-lock",
    ),
    Case("lock-empty-explicit", lock_then("@EXPLICIT\n"), "no @EXPLICIT package lines"),
    Case("lock-not-utf8", lock_then(b"@EXPLICIT\n\xff\n"), "not UTF-8"),
    Case(
        "lock-and-file",
        argv("create", "-p", "{tmp}/env", "--from-lock", "{tmp}/a", "-f", "{tmp}/b", "--yes"),
        "not both",
    ),
    # --- knowledge files
    Case(
        "kb-float-version", kb_then("default_cuda: '12.1'", "default_cuda: 12.1"), "quoted strings"
    ),
    Case("kb-missing-file", kb_then("<delete>", "", "unsloth.yaml"), "is missing"),
    Case("kb-schema", kb_then("schema_version: 1", "schema_version: 7"), "not supported"),
    Case(
        "kb-contradiction",
        kb_then("transformers: 4.44.2", "transformers: 4.50.0", "unsloth.yaml"),
        "violates",
    ),
    Case("kb-dir-missing", argv("env", "--knowledge", "{tmp}/nokb"), "does not exist"),
    # --- prefixes
    Case("doctor-missing", argv("doctor", "-p", "{tmp}/nope"), "does not exist"),
    Case("doctor-a-file", prefix_then("file", "doctor"), "is a file"),
    Case("doctor-not-env", prefix_then("not-env", "doctor"), "not a conda environment"),
    Case("doctor-corrupt-record", prefix_then("corrupt-record", "doctor"), "pytorch"),
    Case("doctor-record-not-object", prefix_then("record-not-object", "doctor"), "python"),
    Case("export-not-env", prefix_then("not-env", "export"), "not a conda environment"),
    Case("module-missing", prefix_then("missing", "module"), "does not exist"),
    Case("verify-a-file", prefix_then("file", "verify"), "is a file"),
    Case(
        "create-prefix-is-a-file",
        file_then("x", "f", "create", "-p", "{file}", "--yes"),
        "already exists",
    ),
    # --- channels (solve)
    Case(
        "channel-missing-dir",
        argv("solve", "-c", "file:///nonexistent/channel/x", "--offline"),
        "nonexistent",
    ),
    Case(
        "channel-malformed",
        argv("solve", "-c", "http//missing-colon", "--offline"),
        "http//missing-colon",
    ),
    Case(
        "channel-remote-offline",
        argv("solve", "-c", "https://conda.example.invalid/x", "--offline"),
        "offline",
    ),
]


@pytest.fixture(autouse=True)
def _isolated_envs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = tmp_path_factory.mktemp("envs")
    monkeypatch.setenv("CONDA_ENVS_PATH", str(envs))
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(cli: Callable[..., Result], tmp_path: Path, case: Case) -> None:
    work = tmp_path / "w"
    work.mkdir()
    args = case.setup(work)
    before = tree(work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        r = cli(*args)
    finally:
        os.chdir(cwd)
    assert r.code != 0, f"{case.id} exited 0: {r.out[-300:]}"
    # progress ("==> ...") and notices may come first; then exactly one error line and hints
    lines = [ln for ln in r.err.strip().splitlines() if not ln.startswith(("==> ", "notice: "))]
    assert lines, f"{case.id}: no error message"
    assert lines[0].startswith("conda-unsloth: error: "), lines
    assert case.says in lines[0], f"{case.id}: {lines[0]!r}"
    assert all(ln.startswith("hint: ") for ln in lines[1:]), lines
    assert "Traceback" not in r.err + r.out
    assert tree(work) == before, f"{case.id} changed the file system"


def test_json_errors_are_one_document(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("doctor", "-p", str(tmp_path / "nope"), "--json")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["error"] == "PrefixError" and "does not exist" in doc["message"]
