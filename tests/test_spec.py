"""EnvSpec <-> environment.yml: round trip, conda's style, and refusing broken files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from conda_unsloth import knowledge, outputs, spec
from conda_unsloth.errors import SpecError, UnslothError
from conda_unsloth.host import Host
from conda_unsloth.select import Request, select
from tests.selection import COMBOS

KB = knowledge.load()


def planned(tmp_path: Path, **req: str) -> tuple[spec.EnvSpec, Path]:
    sel = select(Request(**req), Host(platform="linux-64"), KB)  # type: ignore[arg-type]  # str values; gpu_archs is a tuple
    out = tmp_path / "environment.yml"
    es = spec.from_selection(sel, "unsloth")
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
    # conda's pins are `name==version` lines of the pip: section that read back as constraints
    assert [d.spec for d in back.pip_constraints] == [d.spec for d in es.pip_constraints]
    assert es.pip_constraints[0].spec.startswith("torch==")
    pip = YAML(typ="safe").load(out.read_text())["dependencies"][-1]["pip"]
    assert pip == [d.spec for d in es.pip_constraints] + es.pip_requirements()
    assert not any(line.startswith("-") for line in pip), "no option line (conda-lock refuses it)"


def test_plain_yaml_loader_reads_it(tmp_path: Path) -> None:
    _, out = planned(tmp_path)
    data = YAML(typ="safe").load(out.read_text())
    assert set(data) == {"name", "channels", "dependencies"}
    assert isinstance(data["dependencies"][-1], dict) and "pip" in data["dependencies"][-1]


def test_atomic_write_leaves_no_temp_files_and_one_file(tmp_path: Path) -> None:
    planned(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment.yml"]


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
# `to_yaml` is ruamel's round-trip dumper in conda's style: whatever a spec holds, the file reads
# back as the same channels, dependencies, pip list and variables (and spec.read accepts it).


@pytest.mark.parametrize("name", ["unsloth", None])
def test_every_plan_reads_back_as_written(name: str | None, tmp_path: Path) -> None:
    written = 0
    for profile, cuda, python in COMBOS:
        try:
            sel = select(
                Request(profile=profile, cuda=cuda, python=python), Host(platform="linux-64"), KB
            )
        except UnslothError:
            continue  # a refused combination has no file
        es = spec.from_selection(sel, name, None)
        back = spec.read(write(tmp_path, spec.to_yaml(es).encode()))
        assert (back.name, back.channels) == (name, es.channels)
        assert back.conda_specs() == es.conda_specs()
        assert [d.spec for d in back.pip] == [d.spec for d in es.pip]
        assert [d.spec for d in back.pip_constraints] == [d.spec for d in es.pip_constraints]
        written += 1
    assert written >= 10


QUOTED = ["yes", "No", "null", "true", "3.11", "1e3", "-1", "a: b", "a #b", "é", "x ", "*x", ""]


@pytest.mark.parametrize("scalar", QUOTED)
def test_scalars_yaml_would_misread_are_quoted(scalar: str) -> None:
    from ruamel.yaml import YAML

    es = spec.EnvSpec(None, ["conda-forge"], [spec.Dep("pip"), spec.Dep(scalar, "why")])
    es.variables = {"V": scalar}
    doc = YAML(typ="safe", pure=True).load(spec.to_yaml(es))
    assert doc["dependencies"] == ["pip", scalar]
    assert doc["variables"] == {"V": scalar}


_text = st.from_regex(r"[ -~]{1,10}", fullmatch=True)
_scalar = st.text(st.sampled_from(list("aZ09_.-=:[] #'\"{}&|%?\\\té\n")), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    channels=st.lists(_scalar, min_size=1, max_size=3),
    conda=st.lists(st.tuples(_scalar, st.one_of(st.just(""), _text)), min_size=1, max_size=4),
    pip=st.lists(_scalar, max_size=3),
    variables=st.dictionaries(_scalar, _scalar, max_size=2),
    header=st.lists(_text, max_size=2),
)
def test_any_spec_reads_back_as_written(
    channels: list[str],
    conda: list[tuple[str, str]],
    pip: list[str],
    variables: dict[str, str],
    header: list[str],
) -> None:
    from ruamel.yaml import YAML

    es = spec.EnvSpec(
        None,
        channels,
        [spec.Dep(s, why) for s, why in conda],
        pip=[spec.Dep(s) for s in pip],
        variables=variables,
        header=header,
    )
    doc = YAML(typ="safe", pure=True).load(spec.to_yaml(es))
    assert doc["channels"] == channels
    deps = [s for s, _ in conda] + ([{"pip": pip}] if pip else [])
    assert doc["dependencies"] == deps
    assert doc.get("variables", {}) == variables


def test_atomic_write_temp_files_are_private_unique_and_never_left(tmp_path: Path) -> None:
    """write_atomic: a new file gets 0644, the old content stays when the write fails, and no
    temp file is left."""
    target = tmp_path / "environment.yml"
    outputs.write_atomic(target, "a: 1\n")
    assert target.read_text() == "a: 1\n" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(UnicodeEncodeError):
        outputs.write_atomic(target, "bad \udc80 surrogate\n")
    assert target.read_text() == "a: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment.yml"]


# ----------------------------------------------------------------------------- the forms
# What each stock tool reads the same way is shown with the real tools in tests/micromamba
# (micromamba, conda, conda-lock); these check the writer produces those forms.


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("pytorch-mutex=1.0=cuda", "pytorch-mutex 1.0 cuda"),
        ("pytorch::pytorch=2.5.1=py3.11_cuda12.1_*", "pytorch::pytorch 2.5.1 py3.11_cuda12.1_*"),
        ("conda-forge::xformers=0.0.34=cuda_129*", "conda-forge::xformers 0.0.34 cuda_129*"),
        ("python=3.11", "python=3.11"),  # fuzzy: the same in every tool
        ("mkl<2024.1", "mkl<2024.1"),
        ("pytorch-mutex==1.0=cuda", "pytorch-mutex==1.0=cuda"),
        ("torchvision", "torchvision"),
    ],
)
def test_portable_spec(given: str, written: str) -> None:
    assert spec.portable_spec(given) == written


@pytest.mark.parametrize("tool", [None, "conda", "micromamba"])
@pytest.mark.parametrize("profile", ["pytorch", "conda-forge"])
def test_every_exact_pin_is_space_separated_and_nodefaults_only_for_micromamba(
    profile: str, tool: str | None
) -> None:
    sel = select(Request(profile=profile), Host(platform="linux-64"), KB)
    es = spec.from_selection(sel, None, tool)
    assert ("nodefaults" in es.channels) is (tool == "micromamba")
    for d in es.conda:
        assert not re.fullmatch(r"\S+=[^=<>]+=\S+", d.spec), d.spec  # never name=VER=BUILD
    pytorch = next(d.spec for d in es.conda if "pytorch " in d.spec and "::" in d.spec)
    assert len(pytorch.split()) == 3
    head = "\n".join(es.header)
    if tool == "micromamba":
        assert "micromamba create -n NAME -f THIS_FILE --strict-channel-priority" in head
        assert "conda env create" not in head
    elif tool == "conda":
        assert "--override-channels -c " in head and "micromamba" not in head
    else:
        assert "--strict-channel-priority --override-channels" in head
        assert "conda-lock lock -f THIS_FILE -p linux-64" in head
        assert "conda create -n NAME --file THIS_FILE --override-channels -c " in head


def test_a_pin_of_a_dist_conda_does_not_list_stays_a_requirement(tmp_path: Path) -> None:
    """`torch==2.5.1` pins conda's package only when the file lists pytorch; otherwise it is a
    pip requirement like any other."""
    text = "dependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - torch==2.5.1\n"
    back = spec.read(write(tmp_path, text))
    assert back.pip_requirements() == ["torch==2.5.1"] and back.pip_constraints == []
    text = text.replace("  - pip\n", "  - pip\n  - pytorch 2.5.1 cuda*\n")
    back = spec.read(write(tmp_path, text))
    assert back.pip_requirements() == [] and [d.spec for d in back.pip_constraints] == [
        "torch==2.5.1"
    ]


def test_a_pin_is_read_as_packaging_writes_it() -> None:
    """``name==version`` lines are read without packaging (issue 19): the same canonical form
    ``str(Requirement(line))`` that packaging gives, on generated strings."""
    from packaging.requirements import InvalidRequirement, Requirement

    from conda_unsloth.spec import _PIN, parse_pip_requirement

    parts = st.sampled_from(
        ["x", "Ab_c.d-e", "1", "0", ".", "==", "=", " ", "rc", "a", "b", "post", "dev", "+",
         "cu121", "*", "!", "-", "_", ",", ";", "[", "]", "@", "<", ">", "~"]
    )  # fmt: skip
    pins = 0

    version = st.lists(
        st.sampled_from(["1", "0", "12", ".", "rc", "a", "b", ".post", ".dev", "+", "cu121", "*"]),
        min_size=1,
        max_size=6,
    ).map("".join)
    pin = st.tuples(
        st.sampled_from(["x", "Ab_c.d-e", "torch", "unsloth_zoo", "a-"]),
        st.sampled_from(["==", " ==", "== ", " == ", "  ==  ", "="]),
        version,
    ).map("".join)

    @settings(max_examples=3000, deadline=None, derandomize=True)
    @given(st.one_of(st.lists(parts, max_size=10).map("".join), pin))
    def check(text: str) -> None:
        nonlocal pins
        try:
            want: str | None = str(Requirement(text.strip()))
        except InvalidRequirement:
            want = None
        try:
            got: str | None = parse_pip_requirement(text, "test")
        except SpecError:
            got = None
        assert got == want, text
        pins += _PIN.fullmatch(text.strip()) is not None

    check()
    assert pins > 50  # the fast path was taken
    assert parse_pip_requirement(" torch == 2.4.1 ", "t") == "torch==2.4.1"
