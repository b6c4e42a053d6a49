"""conda-lock v1 export, validated by conda-lock's own pydantic model (PyPI conda-lock)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conda_unsloth.errors import SolveError
from conda_unsloth.exports.condalock import dependencies, export, to_dict
from conda_unsloth.redact import has_credentials
from conda_unsloth.solvers.base import SolvedEnv


def test_conda_lock_model_accepts_it(solved_env: SolvedEnv, tmp_path: Path) -> None:
    lockfile = pytest.importorskip(
        "conda_lock.lockfile", reason="conda-lock (PyPI) provides the reference model"
    )
    path = tmp_path / "conda-lock.yml"
    path.write_text(export(solved_env))
    lock = lockfile.parse_conda_lock_file(path)
    conda = [p for p in lock.package if p.manager == "conda"]
    pip = [p for p in lock.package if p.manager == "pip"]
    assert {p.name for p in conda} == {r.name for r in solved_env.records}
    torch = next(p for p in conda if p.name == "pytorch")
    assert torch.hash.md5 == "a" * 32 and torch.hash.sha256 == "b" * 64
    assert torch.dependencies["pytorch-mutex"] == "1.0 cuda"
    assert (
        torch.url
        == "https://conda.anaconda.org/pytorch/linux-64/pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2"
    )
    assert [(p.name, p.version, p.hash.sha256) for p in pip] == [("peft", "0.14.0", "9" * 64)]
    assert lock.metadata.platforms == ["linux-64"]
    assert [c.url for c in lock.metadata.channels] == [
        "https://conda.anaconda.org/pytorch",
        "https://mirror.example.org/nvidia",
        "https://mirror.example.org/conda-forge",
    ]
    assert lock.metadata.custom_metadata["pip_requirements"] == "unsloth==2024.12.12"


def test_no_credentials_anywhere(solved_env: SolvedEnv) -> None:
    assert not has_credentials(export(solved_env))


def test_content_hash_changes_with_inputs(solved_env: SolvedEnv) -> None:
    a = to_dict(solved_env)["metadata"]["content_hash"]["linux-64"]
    other = replace(solved_env, virtual_packages=("__cuda=12.4=0",))
    assert to_dict(other)["metadata"]["content_hash"]["linux-64"] != a
    assert len(a) == 64


def test_record_without_md5_is_refused(solved_env: SolvedEnv) -> None:
    recs = tuple(replace(r, md5=None) if r.name == "mkl" else r for r in solved_env.records)
    with pytest.raises(SolveError, match="mkl 2023.2.0 h84fe81f_50496 has no md5"):
        export(replace(solved_env, records=recs))


@pytest.mark.parametrize(
    ("depends", "expected"),
    [
        (("python >=3.11,<3.12.0a0", "filelock"), {"python": ">=3.11,<3.12.0a0", "filelock": ""}),
        (("pytorch-mutex 1.0 cuda",), {"pytorch-mutex": "1.0 cuda"}),
        (("mkl >=2018", "mkl <2024.1"), {"mkl": ">=2018,<2024.1"}),
    ],
    ids=["ranges", "build", "merged"],
)
def test_dependencies_mapping(
    solved_env: SolvedEnv, depends: tuple[str, ...], expected: dict[str, str]
) -> None:
    rec = replace(solved_env.records[0], depends=depends)
    assert dependencies(rec) == expected


def test_unpinned_pip_requirements_one_per_line_in_custom_metadata(
    solved_env: SolvedEnv, tmp_path: Path
) -> None:
    solved = replace(
        solved_env,
        extra={"pip_unpinned": ("transformers >= 4.46", "zoo @ git+https://u:p@github.com/u/z")},
    )
    text = export(solved)
    assert not has_credentials(text)
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(text)
    assert doc["metadata"]["custom_metadata"]["pip_requirements"].splitlines() == [
        "unsloth==2024.12.12",
        "transformers >= 4.46",
        "zoo @ git+https://github.com/u/z",
    ]
    lockfile = pytest.importorskip("conda_lock.lockfile")
    path = tmp_path / "conda-lock.yml"
    path.write_text(text)
    lock = lockfile.parse_conda_lock_file(path)
    assert lock.metadata.custom_metadata["pip_requirements"].splitlines()[1] == (
        "transformers >= 4.46"
    )
