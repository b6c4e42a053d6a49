"""Which known issue a failed check names: no GPU (F18) vs a driver too old (F5) vs a CPU torch
(F4), a broken xformers extension (F17/F2 with its root cause), and the heuristics of the
Triton, matmul, attention and unsloth checks. Probe runs use the real CPU torch 2.13.0; the
CUDA build is imitated with a ``.pth`` shim (``torch.version.cuda = "13.0"``), the GPU edge."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conda_unsloth.verify import probe
from tests.verify.conftest import Env, cuda_shim, run_probe

GPU_CHECKS = ["gpu.visible", "gpu.arch", "matmul.fp32", "matmul.fp16", "matmul.bf16"]


def _environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(extra)
    return env


def test_cuda_torch_with_empty_cuda_visible_devices_fails_f18_fake_gpu(
    overlay_env: Env, tmp_path: Path
) -> None:
    cuda_shim(overlay_env)
    run = run_probe(
        overlay_env, "--checks", "torch", tmp=tmp_path, environ=_environ(CUDA_VISIBLE_DEVICES="")
    )
    assert run.code == 1, run.err
    build = run.check("torch.cuda_build")
    assert build["status"] == "pass"
    assert "CUDA 13.0 build" in build["detail"]
    for cid in GPU_CHECKS:
        c = run.check(cid)
        assert (c["status"], c["remedy"], c["required"]) == ("fail", "F18", True), c
    assert "CUDA_VISIBLE_DEVICES=''" in run.check("gpu.visible")["detail"]
    assert "no GPU is visible to this process" in run.check("matmul.fp32")["detail"]
    # the remedy names the new known issue, not "driver too old"
    assert run.doc is not None
    assert "F5" not in {c["remedy"] for c in run.doc["checks"]}


def test_driver_too_old_warning_is_f5_fake_gpu(overlay_env: Env, tmp_path: Path) -> None:
    # what torch does with a driver older than its CUDA: warn, report no device
    cuda_shim(
        overlay_env,
        "import warnings\n"
        "def _is_available():\n"
        "    warnings.warn('CUDA initialization: The NVIDIA driver on your system is too old "
        "(found version 11040).')\n"
        "    return False\n"
        "torch.cuda.is_available = _is_available\n",
    )
    run = run_probe(overlay_env, "--checks", "gpu,matmul.fp32", tmp=tmp_path, environ=_environ())
    gpu = run.check("gpu.visible")
    assert (gpu["status"], gpu["remedy"]) == ("fail", "F5")
    assert "is too old" in gpu["detail"]
    for cid in ("gpu.arch", "matmul.fp32"):
        c = run.check(cid)
        assert (c["status"], c["remedy"]) == ("fail", "F5"), c


def _standin_xformers(env: Env, init: str, cpp_lib: str = "", build_cuda: int = 1208) -> None:
    pkg = env.site / "xformers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(init)
    (pkg / "_cpp_lib.py").write_text(cpp_lib)
    (pkg / "cpp_lib.json").write_text(
        json.dumps({"version": {"torch": "2.9.0+cu128", "cuda": build_cuda}})
    )
    dist = env.site / "xformers-0.0.35.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: xformers\nVersion: 0.0.35\n")


# xformers' _cpp_lib keeps the load error (whose cause is the dlopen failure) and goes on
CPP_LIB_CUDA12 = """
class xFormersInvalidLibException(Exception):
    pass
_cpp_library_load_exception = None
try:
    try:
        raise OSError("libcudart.so.12: cannot open shared object file: No such file or directory")
    except OSError as exc:
        raise xFormersInvalidLibException(
            "xFormers can't load C++/CUDA extensions. xFormers was built for:\\n"
            "    PyTorch 2.9.0+cu128 with CUDA 1208 (you have 2.13.0)"
        ) from exc
except Exception as exc:
    _cpp_library_load_exception = exc
"""


@pytest.mark.parametrize(
    ("build_cuda", "remedy"),
    [(1208, "F17"), (1300, "F17"), (0, "F17")],
    ids=["cuda12-build", "cuda13-build-cuda12-lib", "no-build-cuda-cuda12-lib"],
)
def test_extension_detail_has_the_root_cause_stand_in_xformers_fake_gpu(
    overlay_env: Env, tmp_path: Path, build_cuda: int, remedy: str
) -> None:
    cuda_shim(overlay_env)
    _standin_xformers(
        overlay_env,
        "__version__ = '0.0.35'\nfrom . import _cpp_lib\n"
        "_has_cpp_library = _cpp_lib._cpp_library_load_exception is None\n",
        CPP_LIB_CUDA12,
        build_cuda,
    )
    run = run_probe(overlay_env, "--checks", "xformers.extension", tmp=tmp_path)
    ext = run.check("xformers.extension")
    assert (ext["status"], ext["remedy"]) == ("fail", remedy), ext
    assert "xFormers can't load C++/CUDA extensions" in ext["detail"]
    assert (
        "(cause: OSError: libcudart.so.12: cannot open shared object file: No such file or "
        "directory)" in ext["detail"]
    )


def test_extension_of_the_same_cuda_major_is_f2_stand_in_xformers_fake_gpu(
    overlay_env: Env, tmp_path: Path
) -> None:
    cuda_shim(overlay_env)
    _standin_xformers(
        overlay_env,
        "__version__ = '0.0.35'\nfrom . import _cpp_lib\n",
        "_cpp_library_load_exception = OSError('_C.so: undefined symbol: _ZN2at4_ops')\n",
        1300,
    )
    run = run_probe(overlay_env, "--checks", "xformers.extension", tmp=tmp_path)
    ext = run.check("xformers.extension")
    assert (ext["status"], ext["remedy"]) == ("fail", "F2"), ext
    assert "undefined symbol: _ZN2at4_ops" in ext["detail"]


@pytest.mark.parametrize(
    ("init", "remedy", "text"),
    [
        (
            "raise ImportError('/x/_C.so: undefined symbol: _ZN3c1017RegisterOperators')\n",
            "F9",
            "undefined symbol",
        ),
        ("raise RuntimeError('xformers is broken')\n", "F2", "xformers is broken"),
    ],
    ids=["undefined-symbol", "other-error"],
)
def test_broken_xformers_import_is_fail_not_skip_stand_in_xformers(
    overlay_env: Env, tmp_path: Path, init: str, remedy: str, text: str
) -> None:
    _standin_xformers(overlay_env, init)
    run = run_probe(overlay_env, "--checks", "xformers.extension,xformers.build", tmp=tmp_path)
    for cid in ("xformers.extension", "xformers.build"):
        c = run.check(cid)
        assert (c["status"], c["remedy"], c["required"]) == ("fail", remedy, True), c
        assert text in c["detail"]
    assert run.code == 1


def test_absent_xformers_is_still_an_optional_skip(overlay_env: Env, tmp_path: Path) -> None:
    run = run_probe(overlay_env, "--checks", "xformers.extension", tmp=tmp_path)
    c = run.check("xformers.extension")
    assert (c["status"], c["required"], c["remedy"]) == ("skip", False, None)
    assert run.code == 0


def _chain(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def test_root_cause_walks_cause_and_context() -> None:
    exc = _chain(RuntimeError("outer"), _chain(ValueError("middle"), OSError("libcudart.so.12")))
    assert probe.root_cause(exc).args == ("libcudart.so.12",)
    assert probe.with_cause(exc) == "RuntimeError: outer (cause: OSError: libcudart.so.12)"
    plain = ValueError("alone")
    assert probe.with_cause(plain) == "ValueError: alone"


NO_OP = (
    "NotImplementedError: No operator found for `memory_efficient_attention_forward` with "
    "inputs: query : shape=(2, 1024, 8, 128) (torch.float16)"
)


@pytest.mark.parametrize(
    ("text", "load_exc", "ext_remedy", "major", "expected"),
    [
        (NO_OP, "OSError: libcudart.so.12: cannot open shared object file", "F17", 9, "F17"),
        (NO_OP, "OSError: _C.so: undefined symbol", "F2", 9, "F2"),
        (
            "NotImplementedError: Multiple dispatch failed for 'torch._ops.aten.to.dtype_layout'",
            None,
            None,
            9,
            "F1",
        ),
        ("RuntimeError: CUDA error: invalid argument", None, None, 10, "F8"),
        ("RuntimeError: CUDA error: invalid argument", None, None, 9, None),
        ("RuntimeError: CUDA out of memory", None, None, 9, None),
    ],
    ids=["no-operator-cuda-major", "no-operator-other", "dispatch", "blackwell", "hopper", "oom"],
)
def test_attention_remedy(
    text: str, load_exc: str | None, ext_remedy: str | None, major: int, expected: str | None
) -> None:
    assert probe.attention_remedy(text, load_exc, ext_remedy, major) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "RuntimeError: Failed to find C compiler. Please specify via CC environment variable.",
            (None, "Triton needs a C compiler (gcc/CC) at run time"),
        ),
        ("AssertionError: libcuda.so cannot found!", ("F7", "")),
        ("RuntimeError: PassManager::run failed", (None, "")),
    ],
    ids=["no-cc", "libcuda", "other"],
)
def test_triton_remedy(text: str, expected: tuple[str | None, str]) -> None:
    assert probe.triton_remedy(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "RuntimeError: CUDA error: no kernel image is available for execution on the device",
            "F6",
        ),
        ("RuntimeError: CUDA error: an illegal memory access was encountered", None),
        ("torch.OutOfMemoryError: CUDA out of memory", None),
    ],
    ids=["no-kernel-image", "illegal-access", "oom"],
)
def test_matmul_remedy(text: str, expected: str | None) -> None:
    assert probe.matmul_remedy(text) == expected


@pytest.mark.parametrize(
    ("text", "torch_cuda", "expected"),
    [
        (
            "NotImplementedError: Unsloth cannot find any torch accelerator? You need a GPU.",
            "12.1",
            "F18",
        ),
        (
            "NotImplementedError: Unsloth cannot find any torch accelerator? You need a GPU.",
            None,
            "F4",
        ),
        ("ImportError: cannot import name 'X' from 'transformers'", "12.1", None),
        ("ModuleNotFoundError: No module named 'unsloth_zoo'", "12.1", None),
    ],
    ids=["no-accelerator", "no-accelerator-cpu-torch", "transformers", "missing-companion"],
)
def test_unsloth_remedy(text: str, torch_cuda: str | None, expected: str | None) -> None:
    assert probe.unsloth_remedy(text, torch_cuda) == expected


def _fake_torch(cap: tuple[int, int] | None, bf16: bool) -> Any:
    def get_device_capability(index: int = 0) -> tuple[int, int]:
        if cap is None:
            raise RuntimeError("no capability")
        return cap

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return bf16 if including_emulation else False

    return SimpleNamespace(
        cuda=SimpleNamespace(
            get_device_capability=get_device_capability, is_bf16_supported=is_bf16_supported
        )
    )


@pytest.mark.parametrize(
    ("cap", "expected"),
    [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True), ((12, 0), True)],
    ids=["t4", "v100", "a100", "h100", "b200"],
)
def test_bf16_native_by_compute_capability_fake_gpu(cap: tuple[int, int], expected: bool) -> None:
    # recent torch says is_bf16_supported() is True on sm_7x (emulation)
    assert probe.bf16_native(_fake_torch(cap, bf16=True)) is expected


def test_bf16_native_falls_back_to_no_emulation_fake_gpu() -> None:
    assert probe.bf16_native(_fake_torch(None, bf16=True)) is False
