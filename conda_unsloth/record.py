"""Record classes: what ``@dataclass`` gives this package, without its start-up cost.

``conda-unsloth env`` is a short command, and :mod:`dataclasses` was a quarter of it on Python
3.11: importing it imports :mod:`inspect` (with ast, dis, tokenize, ...), about 9 ms, and each
decorated class ``exec()``s its six generated methods, about 0.45 ms a class, 11 ms for the 25
classes a plan loads. ``@record`` installs shared, generic methods instead (about 0.01 ms a
class) with the same behaviour for the features this package uses:

- ``__init__`` taking the fields positionally or by keyword, in declaration order, with
  defaults and ``field(default=...)`` / ``field(default_factory=...)``, then ``__post_init__``;
- ``__repr__`` as ``Name(a=1, b='x')``; ``__eq__`` comparing same-class instances field by field;
- ``frozen=True``: assignment and deletion raise :class:`FrozenInstanceError` (an
  ``AttributeError``), and instances hash by their fields; mutable records are unhashable;
- :func:`replace` and :func:`fields`;
- a method the class body defines itself (``__repr__``, ``__eq__``, ...) is kept.

The price is paid per instance instead: the generic ``__init__`` takes 1.1 µs where a
dataclass's takes 0.8 µs (five fields, three given); a hot loop can fill ``__dict__`` itself
(``solvers.base.Record.trusted``).

Not supported (and not used here): inheritance between records, ``InitVar``/``ClassVar``
fields, ``compare``/``repr``/``kw_only`` per field, ``order``, ``slots``. A record class that
tries one of them fails at import, not later. Type checkers see ``@record`` as a dataclass
(PEP 681 ``dataclass_transform``). ``tests/test_record.py`` holds both to the same behaviour.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs 3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    _T = TypeVar("_T")
else:

    def dataclass_transform(**_kwargs: object) -> Callable[[_T], _T]:
        return lambda f: f


_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
_FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Any) -> None:
        self.default = default
        self.default_factory = default_factory


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING) -> Any:
    """A field's default: a value, or a zero-argument callable run for each new instance."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    spec: _Spec = getattr(type(self), _FIELDS)
    names = spec.names
    if len(args) > len(names):
        raise TypeError(
            f"{type(self).__name__}() takes {len(names)} positional arguments "
            f"but {len(args)} were given"
        )
    values = self.__dict__
    for name, value in zip(names, args, strict=False):
        values[name] = value
    for name in names[len(args) :]:
        if name in kwargs:
            values[name] = kwargs.pop(name)
        elif name in spec.defaults:
            values[name] = spec.defaults[name]
        elif name in spec.factories:
            values[name] = spec.factories[name]()
        else:
            raise TypeError(f"{type(self).__name__}() missing required argument: '{name}'")
    if kwargs:
        extra = next(iter(kwargs))
        if extra in names:
            raise TypeError(f"{type(self).__name__}() got multiple values for argument '{extra}'")
        raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument '{extra}'")
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _astuple(self: Any) -> tuple[Any, ...]:
    values = self.__dict__
    return tuple(values[name] for name in getattr(type(self), _FIELDS).names)


def _repr(self: Any) -> str:
    values = self.__dict__
    inner = ", ".join(f"{n}={values[n]!r}" for n in getattr(type(self), _FIELDS).names)
    return f"{type(self).__qualname__}({inner})"


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _astuple(self) == _astuple(other)


def _hash(self: Any) -> int:
    return hash(_astuple(self))


def _frozen_setattr(self: Any, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field '{name}'")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field '{name}'")


class _Spec:
    __slots__ = ("defaults", "factories", "frozen", "names")

    def __init__(
        self,
        names: tuple[str, ...],
        defaults: dict[str, Any],
        factories: dict[str, Callable[[], Any]],
        frozen: bool,
    ) -> None:
        self.names = names
        self.defaults = defaults
        self.factories = factories
        self.frozen = frozen


def _process(cls: type, frozen: bool) -> type:
    for base in cls.__mro__[1:]:
        if _FIELDS in base.__dict__:
            raise TypeError(f"record {cls.__name__}: inheriting from a record is not supported")
    annotations: dict[str, str] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (not inspect: see above)
    defaults: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    for name, annotation in annotations.items():
        if "ClassVar" in str(annotation) or "InitVar" in str(annotation):
            raise TypeError(f"record {cls.__name__}.{name}: ClassVar/InitVar are not supported")
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            if value.default_factory is not _MISSING:
                factories[name] = value.default_factory
                delattr(cls, name)
                continue
            value = value.default
            if value is _MISSING:
                delattr(cls, name)
                continue
            setattr(cls, name, value)
        if value is not _MISSING:
            if isinstance(value, (list, dict, set)):
                raise ValueError(
                    f"record {cls.__name__}.{name}: mutable default "
                    f"{type(value).__name__}; use field(default_factory=...)"
                )
            defaults[name] = value
        elif defaults or factories:
            raise TypeError(
                f"record {cls.__name__}: non-default argument '{name}' follows default argument"
            )
    setattr(cls, _FIELDS, _Spec(tuple(annotations), defaults, factories, frozen))
    # as @dataclass does: methods the class writes itself are kept
    own = cls.__dict__
    explicit_hash = own.get("__hash__") is not None
    for name, method in (("__init__", _init), ("__repr__", _repr), ("__eq__", _eq)):
        if name not in own:
            setattr(cls, name, method)
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"record {cls.__name__}: a frozen record cannot define {name}")
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment,method-assign]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment,method-assign]
        if not explicit_hash:
            cls.__hash__ = _hash  # type: ignore[assignment,method-assign]
    elif not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


if TYPE_CHECKING:

    @overload
    def record(cls: type[_T], /) -> type[_T]: ...
    @overload
    def record(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[_T] | None = None, /, *, frozen: bool = False) -> Any:
    """Class decorator: generated ``__init__``, ``__repr__``, ``__eq__`` (and ``__hash__`` and
    read-only fields with ``frozen=True``) from the class's annotated fields."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in declaration order."""
    spec = getattr(obj, _FIELDS, None)
    if not isinstance(spec, _Spec):
        raise TypeError(f"{obj!r} is not a record class or instance")
    return spec.names


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of record ``obj`` with ``changes`` applied (through ``__init__``, so
    ``__post_init__`` checks run again, as with :func:`dataclasses.replace`)."""
    names = fields(obj)
    for name in changes:
        if name not in names:
            raise TypeError(f"{type(obj).__name__} has no field '{name}'")
    values = {name: obj.__dict__[name] for name in names}
    values.update(changes)
    return type(obj)(**values)
