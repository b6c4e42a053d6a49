"""The report schema: validation, round trip, verdict, rendering with knowledge-base remedies."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import knowledge
from conda_unsloth.errors import VerifyError
from conda_unsloth.verify import probe
from conda_unsloth.verify import report as reportmod


def check(
    cid: str, status: str, required: bool = True, remedy: str | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "title": f"title of {cid}",
        "status": status,
        "required": required,
        "seconds": 0.25,
        "detail": f"detail of {cid}",
        "remedy": remedy,
        "data": {"k": [1, 2.5, None, "x"]},
    }


def doc(*checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "conda-unsloth/verify-report/1",
        "probe_version": "1",
        "created": "2026-11-27T23:00:00Z",
        "seconds": 12.5,
        "ok": True,
        "exit_code": 0,
        "summary": {},
        "python": {"version": "3.11.7"},
        "host": {"hostname": "node1"},
        "options": {"expect_cuda": "12.1"},
        "versions": {"torch": "2.5.1", "xformers": None},
        "checks": list(checks),
    }


def test_round_trip() -> None:
    original = doc(
        check("torch.import", "pass"),
        check("gpu.visible", "fail", remedy="F5"),
        check("sdpa.backends", "warn", required=False),
        check("xformers.build", "skip", required=False),
    )
    rep = reportmod.from_json(original)
    again = reportmod.loads(reportmod.dumps(rep))
    assert again == rep
    out = json.loads(reportmod.dumps(rep))
    assert out["checks"] == original["checks"]
    assert out["schema"] == "conda-unsloth/verify-report/1"
    assert out["ok"] is False  # recomputed from the checks, not copied from the input
    assert out["exit_code"] == 1
    assert out["summary"] == {"pass": 1, "fail": 1, "skip": 1, "warn": 1}
    assert out["versions"] == {"torch": "2.5.1", "xformers": None}


@pytest.mark.parametrize(
    ("checks", "ok"),
    [
        ([check("a", "pass"), check("b", "warn")], True),
        ([check("a", "pass"), check("b", "skip", required=False)], True),
        ([check("a", "pass"), check("b", "fail", required=False)], True),
        ([check("a", "pass"), check("b", "skip")], False),
        ([check("a", "pass"), check("b", "fail")], False),
    ],
    ids=["warn-ok", "optional-skip", "optional-fail", "required-skip", "required-fail"],
)
def test_verdict(checks: list[dict[str, Any]], ok: bool) -> None:
    rep = reportmod.from_json(doc(*checks))
    assert rep.ok is ok
    assert rep.exit_code == (0 if ok else 1)


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    d = doc(check("a", "pass"))
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_mutate(["schema"], "conda-unsloth/verify-report/2"), "schema"),
        (_mutate(["checks"], KeyError), "missing 'checks'"),
        (_mutate(["checks"], {"a": 1}), "'checks' has the wrong type"),
        (_mutate(["checks"], []), "it lists no checks"),
        (_mutate(["checks", 0, "status"], "ok"), "status 'ok' is not one of"),
        (_mutate(["checks", 0, "id"], KeyError), "missing 'id'"),
        (_mutate(["checks", 0, "required"], "yes"), "'required' has the wrong type"),
        (_mutate(["checks", 0, "seconds"], True), "'seconds' has the wrong type"),
        (_mutate(["checks", 0, "remedy"], 5), "'remedy' must be a string or null"),
        (_mutate(["checks", 0, "data"], [1]), "'data' must be an object"),
        (_mutate(["checks", 0], "torch.import"), "a check is not a JSON object"),
        (_mutate(["versions"], [1]), "'versions' must be an object"),
        ([1, 2], "not a JSON object"),
    ],
    ids=[
        "schema",
        "no-checks",
        "checks-type",
        "checks-empty",
        "status",
        "no-id",
        "required-type",
        "seconds-bool",
        "remedy-type",
        "data-type",
        "check-type",
        "versions-type",
        "not-object",
    ],
)
def test_malformed_reports_are_refused(bad: Any, message: str) -> None:
    with pytest.raises(VerifyError) as info:
        reportmod.from_json(copy.deepcopy(bad))
    assert message in info.value.message


def test_duplicate_check_ids_are_refused() -> None:
    with pytest.raises(VerifyError, match="listed twice"):
        reportmod.from_json(doc(check("a", "pass"), check("a", "fail")))


def test_not_json_is_refused() -> None:
    with pytest.raises(VerifyError, match="not JSON"):
        reportmod.loads("{not json", "r.json")


def test_render_shows_table_remedies_and_verdict() -> None:
    kb = knowledge.load()
    rep = reportmod.from_json(
        doc(
            check("torch.cuda_build", "fail", remedy="F4"),
            check("gpu.visible", "fail", remedy="F4"),
            check("triton.kernel", "fail", remedy="F7"),
            check("sdpa.backends", "pass", required=False),
            check("odd.check", "fail", remedy="Z9"),
        )
    )
    text = reportmod.render(rep, kb)
    lines = text.splitlines()
    assert lines[0].split() == ["check", "status", "s", "fix", "detail"]
    assert any(line.split()[:4] == ["torch.cuda_build", "FAIL", "0.2", "F4"] for line in lines), (
        text
    )
    assert any(line.startswith("sdpa.backends (optional)") for line in lines)
    f4 = kb.issues["F4"]
    assert f"F4 {f4.title} (torch.cuda_build, gpu.visible)" in lines
    assert f"  run: {f4.fix_commands[0]}" in lines
    assert f"F7 {kb.issues['F7'].title} (triton.kernel)" in lines
    assert "Z9 (odd.check): not in this knowledge base" in lines
    assert lines[-1].startswith("verification FAILED in 12.5 s")
    assert lines[-1].endswith(
        "required checks not passed: torch.cuda_build, gpu.visible, triton.kernel, odd.check"
    )


def test_remedies_as_json() -> None:
    kb = knowledge.load()
    rep = reportmod.from_json(doc(check("seed.dispatch", "fail", remedy="F1")))
    [rem] = [r.to_json() for r in reportmod.remedies(rep, kb)]
    assert rem["id"] == "F1"
    assert rem["checks"] == ["seed.dispatch"]
    assert rem["title"] == kb.issues["F1"].title
    assert rem["fix_commands"] == list(kb.issues["F1"].fix_commands)


def test_remedy_commands_are_filled_in_for_the_env(tmp_path: Path) -> None:
    from conda_unsloth.doctor import EnvRef

    kb = knowledge.load()
    rep = reportmod.from_json(
        doc(
            check("xformers.extension", "fail", remedy="F17"),
            check("gpu.visible", "fail", remedy="F18"),
        )
    )
    prefix = tmp_path / "my env"
    env = EnvRef(prefix)
    text = reportmod.render(rep, kb, env=env)
    runs = [line[len("  run: ") :] for line in text.splitlines() if line.startswith("  run: ")]
    assert runs, text
    assert not [r for r in runs if "PREFIX" in r or "NEW_ENV" in r or "-n ENV" in r], runs
    py = shlex.quote(str(prefix / "bin" / "python"))
    assert f"{py} -m pip install --no-deps nvidia-cuda-runtime-cu12" in runs
    assert f"conda unsloth verify -p {shlex.quote(str(prefix))} --sbatch verify-job.sh" in runs
    assert f"conda unsloth create -p {shlex.quote(str(prefix) + '-fixed')}" in runs
    rems = {r.id: r.to_json(env) for r in reportmod.remedies(rep, kb)}
    assert f"{py} -m pip install --no-deps nvidia-cuda-runtime-cu12" in rems["F17"]["fix_commands"]
    named = {r.id: r.to_json(EnvRef(prefix, "unsloth")) for r in reportmod.remedies(rep, kb)}
    assert "conda unsloth create -n unsloth-fixed" in named["F17"]["fix_commands"]


def test_marker_record() -> None:
    rep = reportmod.from_json(
        doc(check("gpu.visible", "pass"), check("bnb.4bit", "fail", remedy="F11"))
    )
    rec = reportmod.marker_record(rep, None)
    assert rec["verdict"] == "fail"
    assert rec["failed"] == ["bnb.4bit"]
    assert rec["time"] == "2026-11-27T23:00:00Z"
    assert rec["report"] is None


def test_empty_report_text_is_refused() -> None:
    with pytest.raises(VerifyError) as info:
        reportmod.loads(json.dumps(doc()))
    assert "lists no checks (an empty report verifies nothing)" in info.value.message


@pytest.mark.parametrize(
    ("ids", "status", "verdict"),
    [
        (list(probe.BY_ID), "pass", "pass"),
        (list(probe.BY_ID), "fail", "fail"),
        (["matmul.fp32", "seed.dispatch"], "pass", "partial"),
        (["matmul.fp32"], "fail", "fail"),
    ],
    ids=["all-pass", "all-fail", "subset-pass", "subset-fail"],
)
def test_marker_records_partial_for_a_subset(ids: list[str], status: str, verdict: str) -> None:
    checks = [check(i, "pass") for i in ids[:-1]] + [check(ids[-1], status)]
    rep = reportmod.from_json(doc(*checks))
    rec = reportmod.marker_record(rep, None)
    assert rec["verdict"] == verdict
    assert rec["checks"] == ids


def test_interrupted_report_round_trips_and_says_so() -> None:
    d = doc(check("torch.import", "pass"), check("unsloth.import", "fail"))
    d["interrupted"] = "SIGTERM"
    rep = reportmod.from_json(d)
    assert rep.interrupted == "SIGTERM"
    assert json.loads(reportmod.dumps(rep))["interrupted"] == "SIGTERM"
    assert "the probe was stopped by SIGTERM: a partial report" in reportmod.render(rep, None)
    assert reportmod.marker_record(rep, None)["verdict"] == "fail"


LONG_DETAIL = (
    "xformers.ops.memory_efficient_attention failed: NotImplementedError: No operator found for "
    "`memory_efficient_attention_forward` with inputs query: shape=(1, 128, 8, 64) "
    "(torch.bfloat16) key: shape=(1, 128, 8, 64) value: shape=(1, 128, 8, 64) attn_bias: None "
    "p: 0.0; `cutlassF-pt` is not supported because xFormers wasn't build with CUDA support; "
    "the-last-words-must-survive"
)


def _long_report() -> reportmod.VerifyReport:
    long = check("xformers.attention", "fail", remedy="F2")
    long["detail"] = LONG_DETAIL
    return reportmod.from_json(doc(check("torch.import", "pass"), long))


def test_render_into_a_file_keeps_every_detail_whole() -> None:
    """issue 18 #12: a log file gets the whole detail on its line, never cut at 140 columns."""
    kb = knowledge.load()
    text = reportmod.render(_long_report(), kb)  # width None: not a terminal
    row = next(line for line in text.splitlines() if line.startswith("xformers.attention"))
    assert row.endswith(LONG_DETAIL) and len(row) > 140
    assert "…" not in text
    fix = next(line for line in text.splitlines() if line.startswith("  fix: "))
    assert fix == "  fix: " + " ".join(kb.issues["F2"].fix.split())


@pytest.mark.parametrize("width", [80, 100, 140])
def test_render_on_a_terminal_folds_long_details_and_cuts_nothing(width: int) -> None:
    kb = knowledge.load()
    text = reportmod.render(_long_report(), kb, width=width)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("xformers.attention"))
    column = lines[0].index("detail")
    folded = [lines[start][column:]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * column) or not line.strip():
            break
        folded.append(line[column:])
    assert len(folded) > 1, text
    assert " ".join(folded) == LONG_DETAIL  # every word, in order: folded, not cut
    assert "…" not in text
    fix_at = next(i for i, line in enumerate(lines) if line.startswith("  fix: "))
    fix = [lines[fix_at]] + [ln for ln in lines[fix_at + 1 :] if ln.startswith("       ")]
    assert " ".join(ln.strip() for ln in fix) == "fix: " + " ".join(kb.issues["F2"].fix.split())
    # the table's rows and the fix fit the terminal (a word longer than a line stays whole)
    assert all(len(line) <= width for line in lines[start : start + len(folded)] + fix), text
