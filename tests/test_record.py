"""``@record`` against ``@dataclass``: the same class written both ways must behave the same for
every feature the package uses (differential tests), and refuse what it does not support."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import record as rec


def _pair(frozen: bool) -> tuple[type, type]:
    """The same class, once as a dataclass and once as a record (same name and fields)."""

    class Pkg:  # dataclass version
        name: str
        version: str
        build: str = ""
        deps: tuple[str, ...] = ()
        extra: dict[str, str] = dataclasses.field(default_factory=dict)

    class PkgR:  # record version, renamed to Pkg below
        name: str
        version: str
        build: str = ""
        deps: tuple[str, ...] = ()
        extra: dict[str, str] = rec.field(default_factory=dict)

    PkgR.__name__, PkgR.__qualname__ = Pkg.__name__, Pkg.__qualname__
    return dataclasses.dataclass(frozen=frozen)(Pkg), rec.record(frozen=frozen)(PkgR)


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("torch", "2.5.1"), {}),
    (("torch",), {"version": "2.5.1", "build": "cuda"}),
    ((), {"name": "x", "version": "1", "deps": ("a", "b"), "extra": {"k": "v"}}),
    (("a", "1", "b", ("d",), {"e": "f"}), {}),
]
BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),  # missing required
    (("torch",), {}),
    (("a", "1", "b", (), {}, "extra"), {}),  # too many positional
    (("a", "1"), {"nope": 1}),  # unknown keyword
    (("a", "1"), {"name": "b"}),  # given twice
]


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_record_builds_equal_compares_and_prints_like_a_dataclass(
    frozen: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    dc, rc = _pair(frozen)
    d, r = dc(*args, **kwargs), rc(*args, **kwargs)
    assert repr(r) == repr(d)
    assert vars(r) == vars(d)
    assert r == rc(*args, **kwargs)
    assert r != rc("other", *args[1:], **{k: v for k, v in kwargs.items() if k != "name"})
    assert (r == d) is False  # another class: NotImplemented on both sides, then identity
    assert rec.fields(r) == tuple(f.name for f in dataclasses.fields(d))


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(("args", "kwargs"), BAD_CALLS)
def test_record_refuses_the_calls_a_dataclass_refuses(
    frozen: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    dc, rc = _pair(frozen)
    with pytest.raises(TypeError):
        dc(*args, **kwargs)
    with pytest.raises(TypeError) as got:
        rc(*args, **kwargs)
    assert "Pkg()" in str(got.value)


def test_default_factory_gives_each_instance_its_own_value() -> None:
    _, rc = _pair(frozen=False)
    a, b = rc("a", "1"), rc("b", "1")
    a.extra["k"] = "v"
    assert b.extra == {}
    assert "extra" not in rc.__dict__  # like a dataclass: no shared class attribute


def test_frozen_records_are_read_only_and_hash_like_dataclasses() -> None:
    dc, rc = _pair(frozen=True)
    r = rc("a", "1", deps=("x",))
    with pytest.raises(AttributeError):
        r.name = "b"
    with pytest.raises(rec.FrozenInstanceError):
        del r.version
    assert len({_Version("a", ("x",)), _Version("a", ("x",)), _Version("b")}) == 2
    assert hash(_Version("a", ("x",))) == hash(_VersionDC("a", ("x",)))  # the same field tuple
    d = dc("a", "1", deps=("x",))
    with pytest.raises(TypeError):  # a dict field makes both unhashable
        hash(dc("a", "1", extra={"k": "v"}))
    with pytest.raises(TypeError):
        hash(rc("a", "1", extra={"k": "v"}))
    assert vars(r) == vars(d)


def test_mutable_records_are_unhashable_and_assignable() -> None:
    dc, rc = _pair(frozen=False)
    r = rc("a", "1")
    r.version = "2"
    assert r == rc("a", "2")
    with pytest.raises(TypeError):
        hash(r)
    with pytest.raises(TypeError):
        hash(dc("a", "1"))


def test_post_init_runs_after_init_and_after_replace() -> None:
    seen: list[str] = []

    @rec.record(frozen=True)
    class Checked:
        name: str

        def __post_init__(self) -> None:
            if not self.name:
                raise ValueError("empty")
            seen.append(self.name)
            object.__setattr__(self, "upper", self.name.upper())

    c = Checked("a")
    assert c.upper == "A"  # type: ignore[attr-defined]
    c2 = rec.replace(c, name="b")
    assert (c.name, c2.name, seen) == ("a", "b", ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        rec.replace(c, name="")


def test_replace_is_a_copy_with_changes_and_refuses_unknown_fields() -> None:
    dc, rc = _pair(frozen=True)
    r = rc("a", "1", deps=("x",))
    r2 = rec.replace(r, version="2")
    assert repr(r2) == repr(dataclasses.replace(dc("a", "1", deps=("x",)), version="2"))
    assert r.version == "1"
    with pytest.raises(TypeError, match="no field 'nope'"):
        rec.replace(r, nope=1)
    with pytest.raises(TypeError, match="not a record"):
        rec.fields(object())


@pytest.mark.parametrize("frozen", [True, False])
def test_records_pickle_and_copy(frozen: bool) -> None:
    r = PICKLABLE[frozen]("torch", "2.5.1", deps=("a",), extra={"k": "v"})
    for clone in (pickle.loads(pickle.dumps(r, protocol=5)), copy.deepcopy(r), copy.copy(r)):
        assert clone == r and clone is not r
        assert type(clone) is type(r)


@rec.record(frozen=True)
class _FrozenPkg:
    name: str
    version: str
    deps: tuple[str, ...] = ()
    extra: dict[str, str] = rec.field(default_factory=dict)


@rec.record
class _MutablePkg:
    name: str
    version: str
    deps: tuple[str, ...] = ()
    extra: dict[str, str] = rec.field(default_factory=dict)


PICKLABLE = {True: _FrozenPkg, False: _MutablePkg}


@rec.record(frozen=True)
class _Version:
    name: str
    deps: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _VersionDC:
    name: str
    deps: tuple[str, ...] = ()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("a: int = 1\n    b: int", "non-default argument 'b' follows default argument"),
        ("a: list[int] = []", "mutable default list"),
        ("a: int = field(default=1, default_factory=int)", "both default and default_factory"),
        ("a: ClassVar[int] = 1", "ClassVar/InitVar are not supported"),
    ],
)
def test_record_refuses_what_it_does_not_support_at_class_creation(
    source: str, error: str
) -> None:
    code = f"@record\nclass Bad:\n    {source}\n"
    with pytest.raises((TypeError, ValueError), match=error):
        exec(code, {"record": rec.record, "field": rec.field})


def test_record_refuses_inheriting_from_a_record() -> None:
    with pytest.raises(TypeError, match="inheriting from a record"):

        @rec.record
        class Child(_MutablePkg):
            more: int = 0


def test_type_checkers_see_records_as_dataclasses(tmp_path: Path) -> None:
    """mypy (the project's checker) must check a record's constructor and frozen fields: the
    PEP 681 ``dataclass_transform`` marker is what makes it do so."""
    api = pytest.importorskip("mypy.api")
    src = tmp_path / "use_record.py"
    src.write_text(
        textwrap.dedent(
            """\
            from conda_unsloth.record import field, record, replace

            @record(frozen=True)
            class A:
                name: str
                deps: tuple[str, ...] = ()
                extra: dict[str, str] = field(default_factory=dict)

            a = A("x")
            A()  # missing name
            A("x", deps="y")  # wrong type
            a.name = "y"  # frozen
            b: A = replace(a, name="z")
            """
        )
    )
    out, _err, status = api.run(
        [str(src), "--no-incremental", "--strict", "--python-version", "3.10"]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = sorted({int(e.split(":")[1]) for e in errors})
    assert status == 1, out
    assert lines == [10, 11, 12], out


def test_methods_the_class_writes_itself_are_kept_as_dataclass_keeps_them() -> None:
    def make(decorate: Any, fld: Any) -> type:
        class Tagged:
            name: str
            tags: tuple[str, ...] = fld(default=())

            def __repr__(self) -> str:
                return f"<{self.name}>"

            def __eq__(self, other: object) -> bool:
                return isinstance(other, Tagged) and other.name == self.name

            def __hash__(self) -> int:
                return hash(self.name)

        return decorate(frozen=True)(Tagged)

    for cls in (make(dataclasses.dataclass, dataclasses.field), make(rec.record, rec.field)):
        a, b = cls("x", ("t",)), cls("x")
        assert (repr(a), a == b, hash(a) == hash(b)) == ("<x>", True, True), cls


def test_a_frozen_record_cannot_write_its_own_setattr() -> None:
    with pytest.raises(TypeError, match="cannot define __setattr__"):

        @rec.record(frozen=True)
        class Bad:
            name: str

            def __setattr__(self, name: str, value: object) -> None:
                object.__setattr__(self, name, value)
