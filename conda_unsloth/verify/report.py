"""The verification report: its JSON schema, validation, verdict, rendering and remedies.

The probe (``probe.py``, run inside the target env) writes a JSON document of schema
``conda-unsloth/verify-report/1``::

    {"schema": "conda-unsloth/verify-report/1", "probe_version": "1", "created": "...Z",
     "seconds": 23.4, "ok": false, "exit_code": 1, "summary": {"pass": 9, ...},
     "python": {...}, "host": {...}, "options": {...}, "versions": {"torch": "2.5.1", ...},
     "checks": [{"id": "gpu.visible", "title": "...", "status": "fail", "required": true,
                 "seconds": 0.4, "detail": "...", "remedy": "F5", "data": {...}}, ...]}

The verdict is recomputed here from the checks (never taken from ``ok``): the env passes only
when every required check passed or warned. Remedies come from the knowledge base
(``knowledge.load().issues[remedy_id]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import VerifyError

if TYPE_CHECKING:
    from pathlib import Path

    from ..doctor import EnvRef
    from ..knowledge import Knowledge, KnownIssue

SCHEMA = "conda-unsloth/verify-report/1"
STATUSES = ("pass", "fail", "skip", "warn")
PASSING = ("pass", "warn")


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    status: str
    required: bool
    seconds: float
    detail: str
    remedy: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "required": self.required,
            "seconds": self.seconds,
            "detail": self.detail,
            "remedy": self.remedy,
            "data": self.data,
        }


@dataclass(frozen=True)
class VerifyReport:
    probe_version: str
    created: str
    seconds: float
    checks: tuple[CheckResult, ...]
    python: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    schema: str = SCHEMA
    # the signal that stopped the probe ("SIGTERM"): a partial report
    interrupted: str | None = None
    # where a Slurm job ran it (added by the job script, see exports/slurm.py): job_id,
    # array_job_id, array_task_id, partition, node, gpus, target_kind, target; empty otherwise
    slurm: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks if c.required)

    @property
    def complete(self) -> bool:
        """Every check the probe knows was run (not a ``--checks`` subset)."""
        from . import probe

        return set(probe.BY_ID) <= {c.id for c in self.checks}

    @property
    def verdict(self) -> str:
        """``pass``, ``fail``, or ``partial`` (a subset of the checks ran, all passed)."""
        if not self.ok:
            return "fail"
        return "pass" if self.complete else "partial"

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def failed_required(self) -> list[CheckResult]:
        return [c for c in self.checks if c.required and not c.passed]

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def summary(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def device(self) -> str | None:
        gpu = self.check("gpu.visible")
        devices = gpu.data.get("devices") if gpu else None
        if isinstance(devices, list) and devices and isinstance(devices[0], dict):
            return str(devices[0].get("name"))
        return None

    def gpu(self) -> dict[str, Any]:
        """The first device gpu.visible saw: ``name``, ``capability`` (``8.0``), ``driver``
        (all None when it saw none)."""
        gpu = self.check("gpu.visible")
        data = gpu.data if gpu else {}
        devices = data.get("devices")
        first = devices[0] if isinstance(devices, list) and devices else None
        first = first if isinstance(first, dict) else {}

        def text(value: Any) -> str | None:
            return str(value) if isinstance(value, str | int | float) and value != "" else None

        return {
            "name": text(first.get("name")),
            "capability": text(first.get("capability")),
            "count": len(devices) if isinstance(devices, list) else 0,
            "driver": text(data.get("driver")),
        }

    def to_json(self) -> dict[str, Any]:
        doc = self._to_json()
        if self.slurm:
            doc["slurm"] = self.slurm
        return doc

    def _to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "probe_version": self.probe_version,
            "created": self.created,
            "seconds": self.seconds,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "python": self.python,
            "host": self.host,
            "options": self.options,
            "versions": self.versions,
            "interrupted": self.interrupted,
            "checks": [c.to_json() for c in self.checks],
        }


def _bad(why: str, where: str) -> VerifyError:
    return VerifyError(
        f"verification report {where}: {why}",
        hints=["re-run `conda unsloth verify` to produce a fresh report"],
    )


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise _bad(f"missing '{key}'", where)
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise _bad(f"'{key}' has the wrong type ({type(value).__name__})", where)
    return value


def check_from_json(doc: Any, where: str = "check") -> CheckResult:
    if not isinstance(doc, dict):
        raise _bad("a check is not a JSON object", where)
    status = _field(doc, "status", str, where)
    if status not in STATUSES:
        raise _bad(f"status '{status}' is not one of {', '.join(STATUSES)}", where)
    remedy = doc.get("remedy")
    if remedy is not None and not isinstance(remedy, str):
        raise _bad("'remedy' must be a string or null", where)
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise _bad("'data' must be an object", where)
    return CheckResult(
        id=_field(doc, "id", str, where),
        title=str(doc.get("title", "")),
        status=status,
        required=_field(doc, "required", bool, where),
        seconds=float(_field(doc, "seconds", (int, float), where)),
        detail=_field(doc, "detail", str, where),
        remedy=remedy,
        data=data,
    )


def from_json(doc: Any, where: str = "document") -> VerifyReport:
    """Validate and load a report document (VerifyError on anything malformed)."""
    if not isinstance(doc, dict):
        raise _bad("not a JSON object", where)
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise _bad(f"schema {schema!r} is not {SCHEMA!r}", where)
    checks_doc = _field(doc, "checks", list, where)
    if not checks_doc:
        raise _bad("it lists no checks (an empty report verifies nothing)", where)
    checks = tuple(check_from_json(c, f"{where} checks[{i}]") for i, c in enumerate(checks_doc))
    ids = [c.id for c in checks]
    if len(set(ids)) != len(ids):
        raise _bad("a check id is listed twice", where)

    def obj(key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise _bad(f"'{key}' must be an object", where)
        return value

    return VerifyReport(
        schema=schema,
        probe_version=str(_field(doc, "probe_version", str, where)),
        created=str(_field(doc, "created", str, where)),
        seconds=float(_field(doc, "seconds", (int, float), where)),
        checks=checks,
        python=obj("python"),
        host=obj("host"),
        options=obj("options"),
        versions=obj("versions"),
        interrupted=doc["interrupted"] if isinstance(doc.get("interrupted"), str) else None,
        slurm=_slurm(doc.get("slurm"), where),
    )


SLURM_KEYS = (
    "job_id",
    "array_job_id",
    "array_task_id",
    "partition",
    "node",
    "cluster",
    "gpus",
    "cuda_visible_devices",
    "target_kind",
    "target",
)
TARGET_KINDS = ("partition", "constraint", "gpu-type")


def _slurm(value: Any, where: str) -> dict[str, Any]:
    """The report's ``slurm`` object: strings (or null) under known keys; anything else in it
    is dropped, a value of another type is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("'slurm' must be an object", where)
    out: dict[str, Any] = {}
    for key in SLURM_KEYS:
        item = value.get(key)
        if item is None or item == "":
            continue
        if not isinstance(item, str):
            raise _bad(f"'slurm.{key}' must be a string", where)
        out[key] = item
    kind = out.get("target_kind")
    if kind is not None and kind not in TARGET_KINDS:
        raise _bad(f"'slurm.target_kind' {kind!r} is not one of {', '.join(TARGET_KINDS)}", where)
    return out


def loads(text: str, where: str = "document") -> VerifyReport:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise _bad(f"not JSON ({exc})", where) from None
    except RecursionError:
        raise _bad("not JSON (nested too deeply)", where) from None
    return from_json(doc, where)


MAX_REPORT_BYTES = 10_000_000


def load(path: Path) -> VerifyReport:
    """A report file, read with the bounded reader (a regular file of at most 10 MB)."""
    from ..userfiles import read_text

    text = read_text(path, "verification report", limit=MAX_REPORT_BYTES, error=VerifyError)
    return loads(text, str(path))


def dumps(report: VerifyReport) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


@dataclass(frozen=True)
class Remedy:
    id: str
    checks: tuple[str, ...]
    issue: KnownIssue | None

    def commands(self, env: EnvRef | None = None) -> list[str]:
        """The issue's fix commands, with ENV / NEW_ENV / PREFIX filled in for ``env``."""
        if self.issue is None:
            return []
        if env is None:
            return list(self.issue.fix_commands)
        from ..doctor import template

        return [template(c, env) for c in self.issue.fix_commands]

    def to_json(self, env: EnvRef | None = None) -> dict[str, Any]:
        issue = self.issue
        return {
            "id": self.id,
            "checks": list(self.checks),
            "title": issue.title if issue else None,
            "fix": issue.fix if issue else None,
            "fix_commands": self.commands(env),
            "source": issue.source if issue else None,
        }


def remedies(report: VerifyReport, kb: Knowledge) -> list[Remedy]:
    """The known issues named by checks that did not pass, in check order."""
    by_id: dict[str, list[str]] = {}
    for c in report.checks:
        if c.remedy and c.status in ("fail", "warn", "skip"):
            by_id.setdefault(c.remedy, []).append(c.id)
    return [Remedy(rid, tuple(ids), kb.issues.get(rid)) for rid, ids in by_id.items()]


def marker_record(report: VerifyReport, report_file: Path | None) -> dict[str, Any]:
    """What `conda unsloth verify` stores in the env's marker (same shape as create's)."""
    return {
        "verdict": report.verdict,
        "checks": [c.id for c in report.checks],
        "time": report.created,
        "failed": [c.id for c in report.failed_required()],
        "seconds": report.seconds,
        "device": report.device(),
        "probe_version": report.probe_version,
        "report": str(report_file) if report_file else None,
    }


def fleet_key(report: VerifyReport) -> str | None:
    """Under which name a Slurm report is recorded in the marker's ``fleet``: the partition,
    constraint or GPU type its task was for (``slurm.target``), else the partition it ran in;
    None for a report not written by a Slurm job."""
    slurm = report.slurm
    key = slurm.get("target") or slurm.get("partition")
    return str(key) if key else None


def no_gpu(report: VerifyReport) -> bool:
    """The probe saw no usable GPU (gpu.visible failed: F18 no device, F5 driver too old, F4 a
    CPU build of torch)."""
    gpu = report.check("gpu.visible")
    return gpu is not None and not gpu.passed


def fleet_record(report: VerifyReport, report_file: Path | None) -> dict[str, Any]:
    """What the marker's ``fleet`` keeps for one Slurm report: where it ran, the GPU it saw,
    every check's status and the verdict. A job that saw no GPU fails (gpu.visible): a GPU
    partition whose job finds no GPU has not been verified, so it never counts as passed."""
    gpu = report.gpu()
    slurm = report.slurm
    cap = gpu["capability"]
    record: dict[str, Any] = {
        "kind": slurm.get("target_kind") or "partition",
        "verdict": report.verdict,
        "gpu": gpu["name"],
        "arch": f"sm_{cap.replace('.', '')}" if cap else None,
        "capability": cap,
        "gpus": gpu["count"],
        "driver": gpu["driver"],
        "checks": {c.id: c.status for c in report.checks},
        "failed": [c.id for c in report.failed_required()],
        "time": report.created,
        "probe_version": report.probe_version,
        "partition": slurm.get("partition"),
        "node": slurm.get("node"),
        "job": slurm.get("job_id"),
        "array_job": slurm.get("array_job_id"),
        "array_task": slurm.get("array_task_id"),
        "report": str(report_file) if report_file else None,
        "versions": {k: v for k, v in report.versions.items() if v},
    }
    if no_gpu(report):
        visible = report.check("gpu.visible")
        assert visible is not None
        remedy = f" ({visible.remedy})" if visible.remedy else ""
        record["reason"] = f"no usable GPU{remedy}: {' '.join(visible.detail.split())}"
    elif report.failed_required():
        record["reason"] = "required checks not passed: " + ", ".join(record["failed"])
    return record


def fleet_line(name: str, record: dict[str, Any]) -> str:
    """One line about a fleet record: ``a100: pass on NVIDIA A100 (sm_80, driver 550.54.14,
    node gpu-a100, 2026-01-02T03:04:05Z)``."""
    verdict = str(record.get("verdict") or "?")
    where = [
        str(x)
        for x in (
            record.get("arch"),
            f"driver {record['driver']}" if record.get("driver") else None,
            f"node {record['node']}" if record.get("node") else None,
            record.get("time"),
        )
        if x
    ]
    what = f" on {record['gpu']}" if record.get("gpu") else ""
    text = f"{name}: {verdict}{what}" + (f" ({', '.join(where)})" if where else "")
    if verdict != "pass" and record.get("reason"):
        text += f"; {record['reason']}"
    return text


def _folded(text: str, width: int | None) -> list[str]:
    """``text`` on one line (whitespace runs made one space), or folded at word boundaries into
    lines of at most ``width`` columns (the caller indents the continuation lines). Nothing is
    ever cut: a word longer than the line stays whole."""
    text = " ".join(text.split())
    if width is None or len(text) <= width:
        return [text]
    import textwrap

    return textwrap.wrap(text, max(width, 20), break_long_words=False, break_on_hyphens=False) or [
        text
    ]


def render(
    report: VerifyReport,
    kb: Knowledge | None,
    *,
    width: int | None = None,
    env: EnvRef | None = None,
) -> str:
    """The human table, then one block per remedy (its commands filled in for ``env``), then
    the verdict line. ``width``: the terminal's columns, a detail longer than its column is
    folded onto the next lines; None (a file or a pipe): every detail whole on its line."""
    rows = [
        (
            c.id + ("" if c.required else " (optional)"),
            c.status.upper(),
            f"{c.seconds:.1f}",
            c.remedy or "",
            c.detail,
        )
        for c in report.checks
    ]
    heads = ("check", "status", "s", "fix", "detail")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads[:-1])]
    used = sum(widths) + 2 * len(widths)
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads[:-1], widths, strict=True)) + "  detail"]
    for r in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True))
        detail = _folded(r[-1], None if width is None else max(30, width - used))
        lines.append(cells + "  " + detail[0])
        lines.extend(" " * used + more for more in detail[1:])
    if kb is not None:
        for rem in remedies(report, kb):
            issue = rem.issue
            lines.append("")
            if issue is None:
                lines.append(f"{rem.id} ({', '.join(rem.checks)}): not in this knowledge base")
                continue
            lines.append(f"{rem.id} {issue.title} ({', '.join(rem.checks)})")
            fix = _folded(issue.fix, None if width is None else max(30, width - 7))
            lines.append(f"  fix: {fix[0]}")
            lines.extend(f"       {more}" for more in fix[1:])
            lines.extend(f"  run: {cmd}" for cmd in rem.commands(env))
    if report.interrupted:
        lines.append("")
        lines.append(f"the probe was stopped by {report.interrupted}: a partial report")
    s = report.summary()
    counts = ", ".join(f"{n} {k}" for k, n in s.items() if n)
    failed = report.failed_required()
    lines.append("")
    if report.ok and not report.complete:
        lines.append(
            f"verification PASSED (partial: {len(report.checks)} of the checks) in "
            f"{report.seconds:.1f} s ({counts})"
        )
    elif report.ok:
        lines.append(f"verification PASSED in {report.seconds:.1f} s ({counts})")
    else:
        lines.append(
            f"verification FAILED in {report.seconds:.1f} s ({counts}); required checks not "
            f"passed: {', '.join(c.id for c in failed)}"
        )
    return "\n".join(lines)
