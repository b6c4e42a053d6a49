"""The probe's supervisor never leaves a worker behind: SIGTERM/SIGINT stop every worker and
write a partial report, `verify.run_probe` stops the whole probe on its time limit, a worker
that hangs before its first check or after its last one is killed. Hangs come from stand-in
modules in an overlay venv over the real CPU torch 2.13.0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conda_unsloth.errors import VerifyError
from conda_unsloth.verify import run_probe as package_run_probe
from tests.verify.conftest import Env, alive, probe_cmd, run_probe


def _hanging_unsloth(env: Env, pidfile: Path, where: str = "import") -> None:
    pkg = env.site / "unsloth"
    pkg.mkdir()
    body = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
    if where == "import":
        body += "time.sleep(3600)\n"
    elif where == "atexit":  # imports fine; an exit handler that would hang the interpreter
        body += (
            "import atexit\n"
            f"atexit.register(lambda: open({str(pidfile) + '.atexit'!r}, 'w') and time.sleep(3600))\n"
            "DEVICE_TYPE = 'cuda'\n"
        )
    else:  # imports fine, then the worker hangs after its last result (a stdout that blocks)
        body += (
            "import sys\n"
            "class Stuck:\n"
            "    def write(self, s): return len(s)\n"
            "    def flush(self): time.sleep(3600)\n"
            "sys.stdout = Stuck()\n"
            "DEVICE_TYPE = 'cuda'\n"
        )
    (pkg / "__init__.py").write_text(body)


def _wait_for(path: Path, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written in {seconds} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_stops_every_worker_and_writes_a_partial_report_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path, sig: signal.Signals
) -> None:
    pidfile = tmp_path / "worker.pid"
    _hanging_unsloth(overlay_env, pidfile)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "report.json"
    proc = subprocess.Popen(
        probe_cmd(overlay_env, out, "--checks", "unsloth,torch.single_dist"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    try:
        worker = _wait_for(pidfile)
        assert alive(worker)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert not alive(worker)
    assert list(tmpdir.iterdir()) == []  # the probe's work dir is gone
    doc = json.loads(out.read_text())
    assert doc["interrupted"] == sig.name
    assert doc["ok"] is False
    hung = next(c for c in doc["checks"] if c["id"] == "unsloth.import")
    assert hung["status"] == "fail"
    assert hung["detail"] == f"not completed: the probe was stopped by {sig.name}"
    assert f"(stopped by {sig.name}: a partial report)" in stdout


def test_package_run_probe_time_limit_kills_probe_and_workers_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "worker.pid"
    _hanging_unsloth(overlay_env, pidfile)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))  # read by the probe, a fresh process
    t0 = time.monotonic()
    with pytest.raises(VerifyError) as info:
        package_run_probe(overlay_env.python, checks=["unsloth"], overall_timeout=5)
    assert "ran longer than 5 s and was stopped" in info.value.message
    assert time.monotonic() - t0 < 60
    worker = _wait_for(pidfile, 1)
    assert not alive(worker)
    assert list(tmpdir.iterdir()) == []


def test_worker_skips_the_interpreter_shutdown_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path
) -> None:
    # unsloth/torch/CUDA make the interpreter's shutdown slow: a worker leaves with os._exit
    # once its results are written, so an exit handler never runs
    pidfile = tmp_path / "worker.pid"
    _hanging_unsloth(overlay_env, pidfile, where="atexit")
    run = run_probe(overlay_env, "--checks", "unsloth", tmp=tmp_path, timeout=120)
    c = run.check("unsloth.import")
    assert c["status"] == "pass", c
    assert run.code == 0
    assert not alive(_wait_for(pidfile, 1))
    assert not Path(str(pidfile) + ".atexit").exists()


def test_worker_hanging_after_its_last_check_is_killed_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path
) -> None:
    pidfile = tmp_path / "worker.pid"
    _hanging_unsloth(overlay_env, pidfile, where="exit")
    t0 = time.monotonic()
    run = run_probe(overlay_env, "--checks", "unsloth", tmp=tmp_path, timeout=120)
    elapsed = time.monotonic() - t0
    c = run.check("unsloth.import")
    assert c["status"] == "pass", c
    assert run.code == 0
    assert 10 <= elapsed < 60  # the exit grace, then killed
    assert not alive(_wait_for(pidfile, 1))


def test_worker_hanging_before_its_first_check_times_out(overlay_env: Env, tmp_path: Path) -> None:
    # a site hook that hangs in worker processes only (the supervisor passes --worker)
    (overlay_env.site / "_hang_in_worker.pth").write_text(
        "import sys, time; '--worker' in sys.orig_argv and time.sleep(3600)\n"
    )
    t0 = time.monotonic()
    run = run_probe(
        overlay_env, "--checks", "torch.single_dist", "--timeout", "3", tmp=tmp_path, timeout=120
    )
    assert time.monotonic() - t0 < 60
    c = run.check("torch.single_dist")
    assert c["status"] == "fail"
    assert c["detail"] == "timed out after 3 s (the worker process never started the check)"
    assert run.code == 1
