"""The probe run for real inside a venv with the real CPU build of torch 2.13.0 (no GPU here):
CPU build / no GPU must fail with the right remedies, the CPU-capable checks must really run,
and the supervisor must survive a hung and a crashing check."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conda_unsloth import knowledge
from conda_unsloth.verify import PROBE, probe
from conda_unsloth.verify import report as reportmod
from tests.verify.conftest import Env, probe_cmd, run_probe

ALL_IDS = [
    "torch.import",
    "torch.cuda_build",
    "torch.single_dist",
    "gpu.visible",
    "gpu.arch",
    "matmul.fp32",
    "matmul.fp16",
    "matmul.bf16",
    "sdpa.backends",
    "seed.dispatch",
    "xformers.extension",
    "xformers.build",
    "xformers.attention.fp16",
    "xformers.attention.bf16",
    "triton.kernel",
    "bnb.4bit",
    "unsloth.import",
]


def test_cpu_torch_env_fails_as_cpu_build_without_gpu(torch_env: Env, tmp_path: Path) -> None:
    run = run_probe(torch_env, "--expect-cuda", "12.1", tmp=tmp_path)
    assert run.code == 1, run.err
    assert run.doc is not None
    assert run.doc["schema"] == "conda-unsloth/verify-report/1"
    assert [c["id"] for c in run.doc["checks"]] == ALL_IDS
    assert run.doc["ok"] is False
    assert run.doc["versions"]["torch"] == "2.13.0+cpu"

    imp = run.check("torch.import")
    assert imp["status"] == "pass"
    assert "2.13.0+cpu" in imp["detail"]
    build = run.check("torch.cuda_build")
    assert (build["status"], build["remedy"]) == ("fail", "F4")
    assert "CPU build" in build["detail"]
    gpu = run.check("gpu.visible")
    assert (gpu["status"], gpu["remedy"], gpu["required"]) == ("fail", "F4", True)
    one = run.check("torch.single_dist")
    assert one["status"] == "pass"
    assert "torch-2.13.0+cpu.dist-info" in one["detail"]
    # GPU-only checks fail (a CPU build of torch: F4), they are not skipped
    arch = run.check("gpu.arch")
    assert (arch["status"], arch["remedy"], arch["required"]) == ("fail", "F4", True)
    assert "torch 2.13.0+cpu is a CPU build" in arch["detail"]
    # the CPU-capable numerics really ran, on the CPU, within their limits
    for dtype, limit in (("fp32", 1e-4), ("fp16", 5e-3), ("bf16", 2e-2)):
        mm = run.check(f"matmul.{dtype}")
        assert mm["status"] == "pass", mm
        assert mm["data"]["device"] == "cpu"
        assert 0 < mm["data"]["error"] <= limit
    seed = run.check("seed.dispatch")
    assert seed["status"] == "pass"
    assert "aten.to.dtype_layout(float16, strided, cpu) ok" in seed["detail"]
    # xformers is optional: not installed -> skipped, not required
    for cid in ALL_IDS:
        if cid.startswith("xformers."):
            c = run.check(cid)
            assert (c["status"], c["required"]) == ("skip", False), c
    assert run.check("sdpa.backends")["required"] is False
    # an Unsloth stack needs these: missing is a failure
    for cid, word in (
        ("triton.kernel", "triton"),
        ("bnb.4bit", "bitsandbytes"),
        ("unsloth.import", "unsloth"),
    ):
        c = run.check(cid)
        assert c["status"] == "fail"
        assert f"{word} is not installed" in c["detail"]
    # the human table on stdout ends with the verdict
    assert run.out.strip().splitlines()[-1].startswith("verification FAILED")
    # and the package's report model reads it and agrees
    rep = reportmod.from_json(run.doc)
    assert rep.ok is False
    assert {c.id for c in rep.failed_required()} >= {"torch.cuda_build", "gpu.visible"}


def test_subset_of_cpu_checks_passes(torch_env: Env, tmp_path: Path) -> None:
    run = run_probe(torch_env, "--checks", "matmul,torch.single_dist", tmp=tmp_path)
    assert run.doc is not None, run.err
    assert [c["id"] for c in run.doc["checks"]] == [
        "torch.single_dist",
        "matmul.fp32",
        "matmul.fp16",
        "matmul.bf16",
    ]
    assert run.code == 0
    assert run.doc["ok"] is True


def test_json_to_stdout(torch_env: Env, tmp_path: Path) -> None:
    import json
    import subprocess

    proc = subprocess.run(
        [str(torch_env.python), "-I", str(PROBE), "--json", "-", "--checks", "torch.import"],
        capture_output=True,
        text=True,
        check=False,
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert [c["id"] for c in doc["checks"]] == ["torch.import"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expect-cuda", "12"], "--expect-cuda '12' is not X.Y"),
        (["--checks", "nonsense"], "unknown check 'nonsense'"),
        (["--timeout", "0"], "--timeout must be > 0"),
    ],
    ids=["expect-cuda", "unknown-check", "timeout"],
)
def test_bad_arguments_exit_2(
    torch_env: Env, tmp_path: Path, args: list[str], message: str
) -> None:
    run = run_probe(torch_env, *args, tmp=tmp_path)
    assert run.code == 2
    assert run.doc is None
    assert message in run.err
    assert "Traceback" not in run.err


def test_two_torch_distributions_fail_f12(overlay_env: Env, tmp_path: Path) -> None:
    # what `pip install torch` next to a conda torch leaves behind: a second torch dist-info
    dist = overlay_env.site / "torch-2.5.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1\n")
    run = run_probe(overlay_env, "--checks", "torch.single_dist", tmp=tmp_path)
    c = run.check("torch.single_dist")
    assert (c["status"], c["remedy"]) == ("fail", "F12")
    assert "2 torch distributions" in c["detail"]
    assert "2.5.1" in c["detail"]
    assert "2.13.0+cpu" in c["detail"]
    assert run.code == 1


def test_hung_check_is_killed_and_the_rest_runs_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path
) -> None:
    # a stand-in `unsloth` whose import never returns (a hang in a real import is the edge)
    pkg = overlay_env.site / "unsloth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import time\ntime.sleep(3600)\n")
    t0 = time.monotonic()
    run = run_probe(overlay_env, "--checks", "unsloth,matmul.fp32", "--timeout", "3", tmp=tmp_path)
    elapsed = time.monotonic() - t0
    hung = run.check("unsloth.import")
    assert hung["status"] == "fail"
    assert hung["detail"] == "timed out after 3 s"
    assert hung["seconds"] >= 3
    assert run.check("matmul.fp32")["status"] == "pass"
    assert run.code == 1
    assert elapsed < 60


def test_workers_leave_the_callers_directory_alone_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path
) -> None:
    # the real `import unsloth` writes unsloth_compiled_cache/ into its working directory;
    # a stand-in does the same, and reports where that was
    pkg = overlay_env.site / "unsloth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import os\nos.makedirs('unsloth_compiled_cache', exist_ok=True)\n"
        "DEVICE_TYPE = 'cuda'\n__version__ = os.getcwd()\n"
    )
    here = tmp_path / "user-cwd"
    here.mkdir()
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [*probe_cmd(overlay_env, out, "--checks", "unsloth")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=here,
    )
    doc = json.loads(out.read_text())
    c = doc["checks"][0]
    assert (c["id"], c["status"]) == ("unsloth.import", "pass"), proc.stderr
    assert list(here.iterdir()) == []
    worker_cwd = Path(c["data"]["version"])
    assert worker_cwd != here
    assert not worker_cwd.exists()  # the probe's scratch folder is gone with its cache


def test_crashing_check_fails_and_the_group_goes_on_stand_in_xformers(
    overlay_env: Env, tmp_path: Path
) -> None:
    # a stand-in xformers whose extension load kills the process (a segfaulting _C.so)
    pkg = overlay_env.site / "xformers"
    (pkg / "ops" / "fmha").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0.0.0'\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "fmha" / "__init__.py").write_text("")
    (pkg / "ops" / "fmha" / "attn_bias.py").write_text(
        f"import os\nos.kill(os.getpid(), {int(signal.SIGSEGV)})\n"
    )
    dist = overlay_env.site / "xformers-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: xformers\nVersion: 0.0.0\n")
    run = run_probe(overlay_env, "--checks", "seed,xformers.extension", tmp=tmp_path)
    seed = run.check("seed.dispatch")
    assert seed["status"] == "fail"
    assert seed["detail"].startswith(f"worker process died (signal {int(signal.SIGSEGV)})")
    ext = run.check("xformers.extension")  # ran in a fresh worker
    assert ext["status"] == "fail"
    assert "xformers._cpp_lib does not import" in ext["detail"]


def test_every_remedy_id_in_the_probe_is_a_known_issue() -> None:
    tree = ast.parse(PROBE.read_text())
    ids = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and len(node.value) <= 4
        and node.value[:1] in ("F", "U")
        and node.value[1:].isdigit()
    }
    issues = knowledge.load().issues
    assert ids >= {"F1", "F2", "F4", "F5", "F6", "F7", "F11", "F12", "F17", "F18"}
    unknown = sorted(ids - set(issues))
    assert unknown == []


def test_probe_imports_nothing_from_the_package() -> None:
    tree = ast.parse(PROBE.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert "conda_unsloth" not in names
    assert "." not in names
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert names <= stdlib, names - stdlib


@pytest.mark.parametrize(
    ("cap", "arch_list", "expected"),
    [
        ((9, 0), ["sm_75", "sm_80", "sm_86", "sm_90"], "sm_90"),
        ((8, 9), ["sm_80", "sm_86"], "sm_86"),
        ((12, 0), ["sm_80", "sm_90", "compute_90"], "compute_90 (PTX, JIT-compiled)"),
        ((12, 0), ["sm_75", "sm_80", "sm_86", "sm_90"], None),
        ((6, 1), ["sm_70", "sm_75", "sm_80"], None),
        ((10, 0), ["sm_90", "sm_100"], "sm_100"),
    ],
    ids=["h100", "ada-by-sm86", "blackwell-ptx", "blackwell-no-kernel", "pascal", "b200"],
)
def test_arch_coverage(cap: tuple[int, int], arch_list: list[str], expected: str | None) -> None:
    assert probe.arch_covered(cap, arch_list) == expected
