"""EnvSpec <-> environment.yml: round trip, conda's style, and refusing broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from conda_unsloth import knowledge, spec
from conda_unsloth.errors import SpecError, UnslothError
from conda_unsloth.host import Host
from conda_unsloth.select import Request, select
from tests.test_select import COMBOS

KB = knowledge.load()


def planned(tmp_path: Path, **req: str) -> tuple[spec.EnvSpec, Path]:
    sel = select(Request(**req), Host(platform="linux-64"), KB)  # type: ignore[arg-type]
    out = tmp_path / "environment.yml"
    es = spec.from_selection(sel, "unsloth", Path(spec.constraints_path_for(out)).name)
    spec.write_files(es, out)
    return es, out


@pytest.mark.parametrize("profile", ["pytorch", "conda-forge"])
def test_round_trip(tmp_path: Path, profile: str) -> None:
    es, out = planned(tmp_path, profile=profile)
    back = spec.read(out)
    assert back.name == "unsloth"
    assert back.channels == es.channels
    assert back.conda_specs() == es.conda_specs()
    assert back.pip_requirements() == es.pip_requirements()
    assert [d.spec for d in back.pip_constraints] == [d.spec for d in es.pip_constraints]


def test_plain_yaml_loader_reads_it(tmp_path: Path) -> None:
    _, out = planned(tmp_path)
    data = YAML(typ="safe").load(out.read_text())
    assert set(data) == {"name", "channels", "dependencies"}
    assert isinstance(data["dependencies"][-1], dict) and "pip" in data["dependencies"][-1]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    planned(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "environment.pip-constraints.txt",
        "environment.yml",
    ]


def write(tmp_path: Path, content: str | bytes) -> Path:
    p = tmp_path / "env.yml"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


BROKEN = [
    ("syntax", "name: x\ndependencies: [python\n", "YAML syntax error"),
    ("not-mapping", "- python\n", "expected a mapping"),
    ("no-deps", "name: x\n", "'dependencies' must be a non-empty list"),
    ("deps-wrong-type", "dependencies: python\n", "'dependencies' must be a non-empty list"),
    ("unknown-key", "name: x\ndependencies: [python]\nchanels: [a]\n", "unknown key 'chanels'"),
    (
        "channels-wrong-type",
        "channels: conda-forge\ndependencies: [python]\n",
        "'channels' must be a list",
    ),
    (
        "dep-mapping",
        "dependencies:\n  - {conda: python}\n",
        "must be a spec string or a 'pip:' list",
    ),
    ("dep-garbage", "dependencies:\n  - 'python; rm -rf /'\n", "is not a package spec"),
    ("pip-not-strings", "dependencies:\n  - pip:\n      - {a: 1}\n", "pip[0] must be a string"),
    ("missing-constraints", "dependencies:\n  - pip:\n      - -c nope.txt\n", "constraints file"),
    ("name-not-string", "name: [a]\ndependencies: [python]\n", "'name' must be a string"),
]


@pytest.mark.parametrize(
    ("content", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_env_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        spec.read(write(tmp_path, content))
    assert message in exc.value.message
    assert "\n" not in exc.value.message


def test_non_utf8_huge_and_missing(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not UTF-8"):
        spec.read(write(tmp_path, b"name: \xff\n"))
    with pytest.raises(SpecError, match="refusing files over 1 MB"):
        spec.read(write(tmp_path, "# pad\n" * 200_000))
    with pytest.raises(SpecError, match="does not exist"):
        spec.read(tmp_path / "missing.yml")
    with pytest.raises(SpecError, match="is a directory"):
        spec.read(tmp_path)


@pytest.mark.parametrize("data", [b"._", b"+_"], ids=["dot-underscore", "plus-underscore"])
def test_inputs_that_crash_the_yaml_parser_are_spec_errors(tmp_path: Path, data: bytes) -> None:
    """Found by hypothesis: ruamel raises ValueError / IndexError on these instead of a YAMLError."""
    with pytest.raises(SpecError, match="YAML syntax error"):
        spec.read(write(tmp_path, data))


# ----------------------------------------------------------------------------- the writer
# `to_yaml` writes plain files itself (ruamel's import costs more than a plan) and must give
# exactly what ruamel's round-trip dumper gives: ruamel is the reference in every test below.


def _ruamel_and_plain(es: spec.EnvSpec) -> tuple[str, str | None]:
    return spec._to_yaml_ruamel(es), spec._to_yaml_plain(es)


@pytest.mark.parametrize("name", ["unsloth", None])
def test_every_plan_is_written_without_ruamel_exactly_as_ruamel_writes_it(
    name: str | None,
) -> None:
    written = 0
    for profile, cuda, python in COMBOS:
        try:
            sel = select(
                Request(profile=profile, cuda=cuda, python=python), Host(platform="linux-64"), KB
            )
        except UnslothError:
            continue  # a refused combination has no file
        es = spec.from_selection(sel, name, "environment.pip-constraints.txt")
        reference, plain = _ruamel_and_plain(es)
        assert plain == reference, (profile, cuda, python)
        written += 1
    assert written >= 10


def test_variables_are_written_as_ruamel_writes_them() -> None:
    es = spec.EnvSpec("x", ["conda-forge"], [spec.Dep("python=3.11", "why")])
    es.variables = {"CUDA_HOME": "/opt/cuda", "HF_HUB_OFFLINE": "yes"}  # "yes" must be quoted
    reference, plain = _ruamel_and_plain(es)
    assert plain is None and spec.to_yaml(es) == reference
    es.variables = {"CUDA_HOME": "/opt/cuda"}
    assert spec._to_yaml_plain(es) is None  # "/..." is plain YAML, but not in our plain subset
    es.variables = {"LD_PRELOAD": "libfoo.so", "OMP_NUM_THREADS": "x8"}
    reference, plain = _ruamel_and_plain(es)
    assert plain == reference


@pytest.mark.parametrize("line", ["#", "  # indented", "# x", " "])
def test_header_lines_ruamel_writes_differently_go_through_ruamel(line: str) -> None:
    """Found by hypothesis: ruamel adds no "# " to a start-comment line that already begins
    with "#"."""
    es = spec.EnvSpec(None, ["conda-forge"], [spec.Dep("pip")], header=["ok", line])
    reference, plain = _ruamel_and_plain(es)
    assert plain is None
    assert spec.to_yaml(es) == reference


QUOTED = ["yes", "No", "null", "true", "3.11", "1e3", "-1", "a: b", "a #b", "é", "x ", "*x", ""]


@pytest.mark.parametrize("scalar", QUOTED)
def test_scalars_ruamel_would_quote_go_through_ruamel(scalar: str) -> None:
    es = spec.EnvSpec(None, ["conda-forge"], [spec.Dep("pip"), spec.Dep(scalar)])
    reference, plain = _ruamel_and_plain(es)
    assert plain is None
    assert spec.to_yaml(es) == reference


# Three families of files: safe ones (letters, spec punctuation, printable comments: what the
# direct writer is for), edgy ones (now and then ": ", a trailing space or a YAML word) and wild
# ones (quotes, "#", tabs, newlines, unicode, numbers), which it must decline.
_safe = st.from_regex(r"-?[a-zA-Z][a-zA-Z0-9_.=<>!*,/+~@;\[\]-]{0,8}", fullmatch=True)
_joints = st.sampled_from([": ", ":", " ", "  ", " #", "#", " -", "- ", "*", "&"])
_edgy = st.one_of(
    *[_safe] * 4,
    st.builds("{}{}{}".format, _safe, _joints, st.one_of(_safe, st.just(""))),
    st.sampled_from(["yes", "NULL", "off", "y", "python"]),
)
_wild = st.one_of(
    _edgy,
    st.text(st.sampled_from(list("aZ09_.-=:[] #'\"{}&|%?\\\té\n")), min_size=1, max_size=6),
    st.sampled_from(["3.11", "1_000", "0x1f", ".inf", "-1", ""]),
)
_text = st.from_regex(r"[ -~]{1,10}", fullmatch=True)
_odd_text = st.sampled_from(["é", "a\nb", "\t", " "])


def _env_specs(scalar: st.SearchStrategy[str], text: st.SearchStrategy[str]) -> st.SearchStrategy:
    deps = st.lists(
        st.builds(spec.Dep, scalar, st.one_of(st.just(""), text)), min_size=1, max_size=4
    )
    return st.builds(
        spec.EnvSpec,
        name=st.one_of(st.none(), scalar),
        channels=st.lists(scalar, min_size=1, max_size=3),
        conda=deps,
        pip=st.one_of(st.just([]), deps),
        variables=st.one_of(st.just({}), st.dictionaries(scalar, scalar, max_size=2)),
        header=st.lists(text, max_size=2),
    )


@settings(max_examples=600, deadline=None)
@given(
    es=st.one_of(
        _env_specs(_safe, _text),
        _env_specs(_edgy, _text),
        _env_specs(_wild, st.one_of(_text, _odd_text)),
    )
)
def test_the_direct_writer_agrees_with_ruamel_or_declines(es: spec.EnvSpec) -> None:
    reference, plain = _ruamel_and_plain(es)
    event("written directly" if plain is not None else "declined")
    if plain is not None:
        assert plain == reference
    assert spec.to_yaml(es) == reference


def test_atomic_write_temp_files_are_private_unique_and_never_left(tmp_path: Path) -> None:
    """write_atomic's temp file (made without tempfile): exclusive, mode 0600 until the rename,
    a new name each time, and removed when the write fails."""
    made = [spec._create_temp(tmp_path, "environment.yml") for _ in range(50)]
    for fd, _name in made:
        os.close(fd)
    names = {name for _fd, name in made}
    assert len(names) == 50
    assert all(
        Path(n).parent == tmp_path and Path(n).name.startswith(".environment.yml.") for n in names
    )
    assert {os.stat(n).st_mode & 0o777 for n in names} == {0o600}
    for n in names:
        os.unlink(n)
    target = tmp_path / "environment.yml"
    spec.write_atomic(target, "a: 1\n")
    assert target.read_text() == "a: 1\n" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(UnicodeEncodeError):
        spec.write_atomic(target, "bad \udc80 surrogate\n")
    assert target.read_text() == "a: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment.yml"]
