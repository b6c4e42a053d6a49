"""The solver protocol: an EnvSpec and a Target in, a SolvedEnv out (or ``UnsolvableError``
leading with the solver's own explanation).

Backends: ``rattler`` (py-rattler; the default outside conda and what CI exercises) and
``libmamba`` (through conda's plugin manager; imported lazily, only inside conda).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..knowledge.packages import Package
    from ..spec import EnvSpec
    from ..target import Target


@dataclass(frozen=True)
class Record:
    """One solved conda package, with everything a lock or an installer needs."""

    name: str
    version: str
    build: str
    build_number: int
    channel: str  # channel URL (file://... or https://...), tokens already redacted
    subdir: str
    url: str
    fn: str
    md5: str | None = None
    sha256: str | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    size: int | None = None
    timestamp: int | None = None
    noarch: str | None = None
    license: str | None = None

    @property
    def channel_name(self) -> str:
        """The channel's last path element ('pytorch', 'conda-forge', or a local dir name)."""
        return self.channel.rstrip("/").rsplit("/", 1)[-1]

    def to_package(self) -> Package:
        from ..knowledge.packages import Package

        return Package(self.name, self.version, self.build, self.channel_name, "conda")

    def to_json(self, *, redact: bool = True) -> dict[str, Any]:
        """The record as data; channel tokens and passwords in the URL are redacted unless the
        caller needs the real URL to download (the installer)."""
        from ..redact import redact_url

        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "channel": redact_url(self.channel) if redact else self.channel,
            "subdir": self.subdir,
            "url": redact_url(self.url) if redact else self.url,
            "fn": self.fn,
            "md5": self.md5,
            "sha256": self.sha256,
            "depends": list(self.depends),
            "constrains": list(self.constrains),
            "size": self.size,
            "timestamp": self.timestamp,
            "noarch": self.noarch,
        }


@dataclass(frozen=True)
class PipPackage:
    """One pip requirement of the env: pinned name==version, optionally with its wheel."""

    name: str
    version: str
    url: str | None = None
    sha256: str | None = None
    direct: bool = False  # a direct URL requirement (`name @ url`), not from an index

    def requirement(self) -> str:
        """The requirements-file line that installs exactly this (hash added by the caller)."""
        if self.direct and self.url:
            return f"{self.name} @ {self.url}"
        return f"{self.name}=={self.version}"

    def to_package(self) -> Package:
        from ..knowledge.packages import Package

        return Package(self.name, self.version, "", "pypi", "pip")


@dataclass
class SolvedEnv:
    platform: str
    channels: tuple[str, ...]
    records: tuple[Record, ...]
    virtual_packages: tuple[str, ...]
    solver: str  # e.g. "rattler 0.28.0" or "libmamba (conda 26.7.1)"
    pip: tuple[PipPackage, ...] = ()
    pip_constraints: tuple[str, ...] = ()
    spec: EnvSpec | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str) -> Record | None:
        return next((r for r in self.records if r.name == name), None)

    def packages(self) -> list[Package]:
        return [r.to_package() for r in self.records] + [p.to_package() for p in self.pip]


class Solver(Protocol):
    name: str

    def solve(self, spec: EnvSpec, target: Target, *, offline: bool = False) -> SolvedEnv:
        """Resolve ``spec`` for ``target`` (its platform and virtual packages, not this host's).

        Channels are ``spec.channels`` in strict priority order. Raises ``UnsolvableError``
        (its message leads with the solver's explanation) or ``SolveError``.
        """
        ...
