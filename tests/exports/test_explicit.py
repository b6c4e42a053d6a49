"""@EXPLICIT export: parsed by py-rattler's own explicit-environment parser and checked line by
line against CEP 23's regex; dependencies come first; no credentials survive."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from conda_unsloth.exports.explicit import export, ordered
from conda_unsloth.redact import has_credentials
from conda_unsloth.solvers.base import SolvedEnv

# CEP 23: (url/)fn(.tar.bz2|.conda)(#md5|#(sha256:)?sha256)?
CEP23 = re.compile(
    r"^(?P<url>[a-z+]+://\S+/)?[^/\s]+\.(tar\.bz2|conda)(#([0-9a-f]{32}|(sha256:)?[0-9a-f]{64}))?$"
)


def test_lines_follow_cep23_with_sha256(solved_env: SolvedEnv) -> None:
    text = export(solved_env)
    body = text.split("@EXPLICIT\n", 1)[1].splitlines()
    pkg_lines = [ln for ln in body if not ln.startswith("#")]
    assert len(pkg_lines) == len(solved_env.records)
    for ln in pkg_lines:
        assert CEP23.match(ln), ln
        assert re.search(r"#[0-9a-f]{64}$", ln)
    assert "# platform: linux-64" in text
    assert not has_credentials(text)


def test_rattler_parses_it(solved_env: SolvedEnv) -> None:
    explicit = pytest.importorskip("rattler.explicit_environment")
    spec = explicit.ExplicitEnvironmentSpec.from_str(export(solved_env))
    assert str(spec.platform) == "linux-64"
    urls = [p.url for p in spec.packages]
    assert len(urls) == len(solved_env.records)
    assert urls[0].startswith("https://conda.anaconda.org/") or urls[0].startswith(
        "https://mirror.example.org/"
    )
    assert all("/t/" not in u and "@" not in u for u in urls)


def test_dependencies_come_first(solved_env: SolvedEnv) -> None:
    names = [r.name for r in ordered(solved_env.records)]
    for before, after in [
        ("python", "pytorch"),
        ("cuda-runtime", "pytorch-cuda"),
        ("pytorch-cuda", "pytorch"),
        ("mkl", "pytorch"),
    ]:
        assert names.index(before) < names.index(after)


def test_pip_packages_are_comments(solved_env: SolvedEnv) -> None:
    text = export(solved_env)
    assert "# pip unsloth==2024.12.12\n" in text
    assert (
        "# pip peft==0.14.0 @ https://files.pythonhosted.org/packages/88/05/peft-0.14.0-py3-none-any.whl#sha256="
        + "9" * 64
        in text
    )


UNPINNED = ("unsloth", "transformers>=4.46", "unsloth_zoo @ git+https://tok3n@github.com/u/z.git")


def test_unpinned_pip_requirements_are_comment_lines(solved_env: SolvedEnv) -> None:
    solved = replace(solved_env, extra={"pip_unpinned": UNPINNED})
    text = export(solved)
    pip_lines = [ln for ln in text.splitlines() if ln.startswith("# pip ")]
    assert pip_lines[-3:] == [
        "# pip unsloth",
        "# pip transformers>=4.46",
        "# pip unsloth_zoo @ git+https://github.com/u/z.git",
    ]
    assert not has_credentials(text)


def test_header_says_which_conda_reads_sha256_lines(solved_env: SolvedEnv) -> None:
    header = export(solved_env).split("@EXPLICIT", 1)[0]
    assert "needs conda >= 24.9" in header
