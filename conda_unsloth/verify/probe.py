"""Post-install verification probe for an Unsloth GPU environment.

Runs *inside the environment under test*::

    <prefix>/bin/python -I probe.py --json OUT [--expect-cuda 12.1] [--checks ...]

It is one file: standard library plus the libraries of the env it tests (torch, xformers, triton,
bitsandbytes, unsloth), never ``conda_unsloth`` (the env need not contain it). The Triton kernel
lives in ``triton_kernel.py`` next to this file (``@triton.jit`` needs a real source file).

Checks run in worker processes (this same file, ``--worker GROUP``), one process per group, all
groups at once: ``import unsloth`` alone takes ~36 s on an H100, so it runs beside the component
checks. Every check has its own timeout: a hung check is killed, reported ``fail`` ("timed out
after N s"), and the rest of its group goes on in a fresh worker.

No worker outlives the supervisor: SIGTERM / SIGINT kill every worker's process group and the
probe writes a partial report (``"interrupted": "SIGTERM"``; the checks not completed fail). A
worker that hangs before its first check is bounded by that check's timeout, one that hangs
after its last result is killed ``EXIT_GRACE`` seconds later. A worker leaves with
``os._exit`` once its results are written: the interpreter's shutdown with torch, CUDA and
unsloth loaded takes seconds and proves nothing.

Each check reports ``id``, ``status`` (pass/fail/skip/warn), ``seconds``, ``detail``, ``remedy``
(a known-issue id of conda-unsloth's knowledge base, or null), ``required`` and ``data``.
Exit code: 0 when every required check passed (or warned), 1 otherwise, 2 for bad arguments.

Required checks: all, except ``sdpa.backends`` (information), the xformers checks when xformers
is not installed (Unsloth then uses PyTorch SDPA), and ``matmul.bf16`` /
``xformers.attention.bf16`` on GPUs without native bf16 (compute capability < 8.0). A missing
triton, bitsandbytes or unsloth is a failure: an Unsloth stack needs them; so is an xformers
that is installed but does not import. Checks that need a GPU fail without one: F18 (no GPU
visible), F5 (driver too old), F4 (a CPU build of torch).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

SCHEMA = "conda-unsloth/verify-report/1"
PROBE_VERSION = "1"
STATUSES = ("pass", "fail", "skip", "warn")
DEFAULT_TIMEOUT = 120.0
UNSLOTH_TIMEOUT = 300.0
KERNEL_FILE = "triton_kernel.py"

# Offline switches for `import unsloth` (it must not reach the network on a compute node) and
# the switch that turns Unsloth's silent CPU fallback into an error.
UNSLOTH_ENV = {
    "UNSLOTH_DISABLE_CPU_FALLBACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

# xformers' own tolerances (AttentionFwOpBase / AttentionBwOpBase, xformers 0.0.27-0.0.35);
# the probe reads them from the installed xformers and falls back to these.
XF_FW_TOL = {"float16": (4e-3, 4e-4), "bfloat16": (2e-2, 5e-3)}
XF_BW_TOL = {"float16": (0.2, 2e-2), "bfloat16": (0.9, 0.1)}
# matmul vs a float64 reference, max |err| / max |ref| (about 5x the values measured on H100).
MATMUL_TOL = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 2e-2}
# bitsandbytes nf4 (blocksize 64) on N(0,1) data: round-trip relative Frobenius error is 0.092.
BNB_ROUNDTRIP_TOL = 0.11
BNB_MATMUL_TOL = 1e-2


class Skip(Exception):
    """A check that does not apply (``required`` says whether that counts against the env)."""

    def __init__(self, detail: str, required: bool = True, remedy: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.required = required
        self.remedy = remedy


class Failed(Exception):
    """A check that cannot run where it must (e.g. no GPU): reported ``fail`` with a remedy."""

    def __init__(self, detail: str, remedy: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.remedy = remedy


class Interrupted(BaseException):
    """SIGTERM / SIGINT reached the supervisor: stop the workers, write a partial report."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Outcome:
    def __init__(
        self,
        status: str,
        detail: str,
        remedy: str | None = None,
        required: bool = True,
        data: dict[str, Any] | None = None,
    ) -> None:
        assert status in STATUSES
        self.status = status
        self.detail = detail
        self.remedy = remedy
        self.required = required
        self.data = data or {}


def ok(detail: str, **data: Any) -> Outcome:
    return Outcome("pass", detail, data=data)


def fail(detail: str, remedy: str | None = None, **data: Any) -> Outcome:
    return Outcome("fail", detail, remedy=remedy, data=data)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def error_text(exc: BaseException) -> str:
    """The messages of an exception and its causes, joined (for remedy matching)."""
    parts: list[str] = []
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " <- ".join(parts)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a ``__cause__`` / ``__context__`` chain."""
    seen = {id(exc)}
    cur = exc
    while True:
        nxt = cur.__cause__ or cur.__context__
        if nxt is None or id(nxt) in seen:
            return cur
        seen.add(id(nxt))
        cur = nxt


def with_cause(exc: BaseException) -> str:
    """The first line of ``exc`` and, when it has one, of its innermost cause."""
    root = root_cause(exc)
    if root is exc:
        return first_line(exc)
    return f"{first_line(exc)} (cause: {first_line(root)})"


def no_gpu_remedy(torch: Any, notes: str) -> str:
    """Known-issue id when torch sees no usable GPU: F4 CPU build, F5 driver too old, F18."""
    if not getattr(torch.version, "cuda", None):
        return "F4"
    if "too old" in notes or "InsufficientDriver" in notes or "insufficient driver" in notes:
        return "F5"
    return "F18"


def triton_remedy(text: str) -> tuple[str | None, str]:
    """(known-issue id, extra detail) for a failed Triton kernel."""
    low = text.lower()
    if "c compiler" in low or "failed to find c compiler" in low:
        return None, "Triton needs a C compiler (gcc/CC) at run time"
    if "libcuda" in text:
        return "F7", ""
    return None, ""


def matmul_remedy(text: str) -> str | None:
    return "F6" if "no kernel image" in text else None


def unsloth_remedy(text: str, torch_cuda: str | None) -> str | None:
    low = text.lower()
    if "cannot find any torch accelerator" in low or "no gpu" in low or "gpu not" in low:
        return "F18" if torch_cuda else "F4"
    return None


def attention_remedy(
    text: str,
    load_exc_text: str | None,
    extension_remedy: str | None,
    capability_major: int | None,
) -> str | None:
    """Known-issue id for an exception of ``memory_efficient_attention``."""
    if "Multiple dispatch failed" in text:
        return "F1"
    if load_exc_text is not None:
        return extension_remedy or "F2"
    if capability_major is not None and capability_major >= 10 and "invalid argument" in text:
        return "F8"
    return None


def bf16_native(torch: Any, index: int = 0) -> bool:
    """Native bf16 (compute capability >= 8.0). ``torch.cuda.is_bf16_supported()`` also says
    True on sm_7x where recent torch emulates bf16."""
    try:
        major = int(torch.cuda.get_device_capability(index)[0])
    except Exception:
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:
            return bool(torch.cuda.is_bf16_supported())
    return major >= 8


def import_remedy(exc: BaseException) -> str | None:
    """Known-issue id for a failed import of a compiled library."""
    text = error_text(exc)
    if "iJIT_NotifyEvent" in text:
        return "F10"
    if "GLIBC_" in text:
        return "F16"
    if "undefined symbol" in text:
        return "F9"
    if "custom_op" in text:
        return "F15"
    return None


def dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # a broken dist-info
        return None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------- worker context


class Ctx:
    """State shared by the checks of one worker process (imports are done once)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._torch: Any = None
        self._torch_error: BaseException | None = None
        self._cuda: bool | None = None
        self.cuda_warnings: list[str] = []

    def torch(self) -> Any:
        if self._torch is None and self._torch_error is None:
            try:
                self._torch = importlib.import_module("torch")
            except BaseException as exc:  # ImportError, OSError, ...
                self._torch_error = exc
        if self._torch is None:
            raise Skip(
                f"torch does not import ({first_line(self._torch_error or ImportError())}); "
                "see torch.import"
            )
        return self._torch

    def cuda(self) -> bool:
        """True when torch can use a CUDA device."""
        if self._cuda is None:
            torch = self.torch()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    self._cuda = bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
                except Exception as exc:
                    self.cuda_warnings.append(first_line(exc))
                    self._cuda = False
            self.cuda_warnings.extend(str(w.message).strip() for w in caught)
        return self._cuda

    def need_gpu(self) -> Any:
        """torch, when a CUDA device is usable; else ``Failed`` (F4 CPU torch, F5, F18)."""
        torch = self.torch()
        if not self.cuda():
            remedy = no_gpu_remedy(torch, "; ".join(self.cuda_warnings))
            why = {
                "F4": f"torch {torch.__version__} is a CPU build",
                "F5": "the NVIDIA driver is too old",
            }.get(remedy, "no GPU is visible to this process")
            raise Failed(f"needs a CUDA device; none is usable: {why} (see gpu.visible)", remedy)
        return torch

    def device(self) -> str:
        return "cuda" if self.cuda() else "cpu"


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version, from /proc or nvidia-smi (None when there is none)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        m = re.search(r"Kernel Module(?: for [^ ]+)?\s+([0-9]+\.[0-9]+(?:\.[0-9]+)?)", text)
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return None


# ----------------------------------------------------------------------------- torch group


def check_torch_import(ctx: Ctx) -> Outcome:
    try:
        torch: Any = importlib.import_module("torch")
    except BaseException as exc:
        ctx._torch_error = exc
        return fail(f"import torch failed: {first_line(exc)}", import_remedy(exc))
    ctx._torch = torch
    return ok(
        f"torch {torch.__version__} from {Path(torch.__file__).parent}", version=torch.__version__
    )


def check_torch_cuda_build(ctx: Ctx) -> Outcome:
    torch = ctx.torch()
    cuda = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    expect = ctx.args.expect_cuda
    if not cuda:
        what = f"a ROCm build (HIP {hip})" if hip else "a CPU build"
        return fail(
            f"torch {torch.__version__} is {what}: torch.version.cuda is None", "F4", cuda=None
        )
    if expect and not (cuda == expect or cuda.startswith(expect + ".")):
        return fail(
            f"torch {torch.__version__} is built for CUDA {cuda}, expected CUDA {expect}",
            "F4",
            cuda=cuda,
            expected=expect,
        )
    return ok(f"torch {torch.__version__} is a CUDA {cuda} build", cuda=cuda, expected=expect)


def check_torch_single_dist(ctx: Ctx) -> Outcome:
    from importlib import metadata

    found: list[tuple[str, str]] = []
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"] or ""
        except Exception:
            continue
        if re.sub(r"[-_.]+", "-", name).lower() == "torch":
            where = str(getattr(dist, "_path", "?"))
            found.append((dist.version, where))
    if not found:
        return fail("no distribution named torch is installed (importlib.metadata)")
    listing = ", ".join(f"torch {v} ({w})" for v, w in found)
    if len(found) > 1:
        return fail(f"{len(found)} torch distributions installed: {listing}", "F12", dists=found)
    return ok(f"one torch distribution: {listing}", dists=found)


def driver_cuda_version(torch: Any) -> int | None:
    """The newest CUDA the driver supports (e.g. 13000), from torch or libcuda itself."""
    with contextlib.suppress(Exception):
        return int(torch._C._cuda_getDriverVersion())
    with contextlib.suppress(Exception):  # torch 2.11 has no _cuda_getDriverVersion
        import ctypes

        version = ctypes.c_int(0)
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            return int(version.value) or None
    return None


def check_gpu_visible(ctx: Ctx) -> Outcome:
    torch = ctx.torch()
    driver = nvidia_driver()
    cuda_build = getattr(torch.version, "cuda", None)
    if not ctx.cuda():
        notes = "; ".join(ctx.cuda_warnings)
        if not cuda_build:
            return fail(
                f"no GPU usable: torch {torch.__version__} is a CPU build"
                + (f" (NVIDIA driver {driver} is present)" if driver else ""),
                "F4",
                driver=driver,
            )
        if no_gpu_remedy(torch, notes) == "F5":
            return fail(
                f"the NVIDIA driver {driver or ''} is too old: {notes}", "F5", driver=driver
            )
        where = (
            f"NVIDIA driver {driver} is loaded but torch sees no device"
            if driver
            else "no NVIDIA driver (no /proc/driver/nvidia/version, no nvidia-smi)"
        )
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        if mask is not None:
            where += f"; CUDA_VISIBLE_DEVICES={mask!r}"
        return fail(
            f"no GPU usable: {where}" + (f"; {notes}" if notes else ""), "F18", driver=driver
        )
    devices = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
            }
        )
    driver_api = driver_cuda_version(torch)
    names = ", ".join(f"{d['name']} (sm_{d['capability'].replace('.', '')})" for d in devices)
    max_cuda = f"{driver_api // 1000}.{driver_api % 1000 // 10}" if driver_api else "?"
    return ok(
        f"{len(devices)} device(s): {names}; driver {driver or '?'} (CUDA <= {max_cuda}); "
        f"torch CUDA {cuda_build}",
        devices=devices,
        driver=driver,
        driver_cuda=max_cuda,
    )


def arch_covered(cap: tuple[int, int], arch_list: list[str]) -> str | None:
    """How a device of compute capability ``cap`` is served by torch's arch list, or None."""
    major, minor = cap
    best: tuple[int, str] | None = None
    for entry in arch_list:
        m = re.fullmatch(r"sm_([0-9]+?)([0-9])", entry)
        if (
            m
            and int(m.group(1)) == major
            and int(m.group(2)) <= minor
            and (best is None or int(m.group(2)) > best[0])
        ):
            best = (int(m.group(2)), entry)
    if best is not None:
        return best[1]
    for entry in arch_list:
        m = re.fullmatch(r"compute_([0-9]+?)([0-9])", entry)
        if m and (int(m.group(1)), int(m.group(2))) <= cap:
            return entry + " (PTX, JIT-compiled)"
    return None


def check_gpu_arch(ctx: Ctx) -> Outcome:
    torch = ctx.need_gpu()
    arch_list = list(torch.cuda.get_arch_list())
    problems = []
    served = []
    for i in range(torch.cuda.device_count()):
        cap = tuple(torch.cuda.get_device_capability(i))
        how = arch_covered((int(cap[0]), int(cap[1])), arch_list)
        label = f"sm_{cap[0]}{cap[1]}"
        if how is None:
            problems.append(
                f"device {i} is {label}, not in torch's arch list {' '.join(arch_list)}"
            )
        else:
            served.append(f"{label} by {how}")
    if problems:
        return fail("no kernel image: " + "; ".join(problems), "F6", arch_list=arch_list)
    try:
        x = torch.arange(1024, device="cuda", dtype=torch.float32)
        total = float((x * 2).sum().item())
    except Exception as exc:
        return fail(
            f"a tiny CUDA kernel failed: {first_line(exc)}",
            matmul_remedy(error_text(exc)),
            arch_list=arch_list,
        )
    if total != 1023.0 * 1024.0:
        return fail(f"a tiny CUDA kernel computed {total}, expected {1023.0 * 1024.0}", "F6")
    return ok("; ".join(served), arch_list=arch_list)


def _matmul(ctx: Ctx, dtype_name: str) -> Outcome:
    torch = ctx.torch()
    # a CUDA build of torch that sees no GPU fails (F18/F5): a CPU matmul proves nothing about
    # a GPU env; a CPU build is already F4 (torch.cuda_build) and runs the numerics on the CPU
    on_gpu = bool(getattr(torch.version, "cuda", None))
    if on_gpu:
        ctx.need_gpu()
    device = "cuda" if on_gpu else "cpu"
    dtype = getattr(torch, dtype_name)
    if on_gpu and dtype_name == "bfloat16" and not bf16_native(torch):
        raise Skip("this GPU has no native bf16 (compute capability < 8.0)", required=False)
    n = 1024 if on_gpu else 256
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, dtype=torch.float64, device=device, generator=gen)
    b = torch.randn(n, n, dtype=torch.float64, device=device, generator=gen)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref = a @ b
        got = (a.to(dtype) @ b.to(dtype)).double()
        if on_gpu:
            torch.cuda.synchronize()
    except Exception as exc:
        return fail(
            f"{dtype_name} matmul on {device} raised {first_line(exc)}",
            matmul_remedy(error_text(exc)),
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    err = float(((got - ref).abs().max() / ref.abs().max()).item())
    tol = MATMUL_TOL[dtype_name]
    text = f"{device}: {n}x{n} {dtype_name} vs float64, max err/max|ref| {err:.2e} (limit {tol:g})"
    if not math.isfinite(err) or err > tol:
        return fail(text, None, device=device, error=err, tolerance=tol)
    return ok(text, device=device, error=err, tolerance=tol)


def check_matmul_fp32(ctx: Ctx) -> Outcome:
    return _matmul(ctx, "float32")


def check_matmul_fp16(ctx: Ctx) -> Outcome:
    return _matmul(ctx, "float16")


def check_matmul_bf16(ctx: Ctx) -> Outcome:
    return _matmul(ctx, "bfloat16")


def check_sdpa_backends(ctx: Ctx) -> Outcome:
    torch = ctx.torch()
    if not ctx.cuda():
        raise Skip("SDPA's flash/efficient/cudnn backends need a CUDA device", required=False)
    F = importlib.import_module("torch.nn.functional")

    try:
        attention = importlib.import_module("torch.nn.attention")

        def ctxmgr(name: str) -> Any:
            return attention.sdpa_kernel([getattr(attention.SDPBackend, name)])

    except ImportError:  # torch < 2.3

        def ctxmgr(name: str) -> Any:
            flags = {"enable_flash": False, "enable_mem_efficient": False, "enable_math": False}
            key = {
                "FLASH_ATTENTION": "enable_flash",
                "EFFICIENT_ATTENTION": "enable_mem_efficient",
            }
            if name not in key:
                raise RuntimeError("not in this torch")
            flags[key[name]] = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.backends.cuda.sdp_kernel(**flags)

    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, 4, 256, 64, device="cuda", dtype=torch.float16, generator=gen)
        for _ in range(3)
    )
    result: dict[str, str] = {}
    for name, label in (
        ("FLASH_ATTENTION", "flash"),
        ("EFFICIENT_ATTENTION", "efficient"),
        ("CUDNN_ATTENTION", "cudnn"),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with ctxmgr(name):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.cuda.synchronize()
            result[label] = "available"
        except Exception as exc:
            result[label] = f"unavailable ({first_line(exc)[:120]})"
    avail = [k for k, v in result.items() if v == "available"]
    detail = "available: " + (", ".join(avail) or "none")
    status = "pass" if avail else "warn"
    return Outcome(status, detail, required=False, data=result)


# ----------------------------------------------------------------------------- xformers group


def _xformers(ctx: Ctx) -> Any:
    if not installed("xformers"):
        raise Skip(
            "xformers is not installed (optional: Unsloth uses PyTorch SDPA)", required=False
        )
    ctx.torch()
    try:
        return importlib.import_module("xformers")
    except Exception as exc:  # installed but broken: a failure, not a skip
        raise Failed(
            f"import xformers failed: {with_cause(exc)}", import_remedy(exc) or "F2"
        ) from exc


def check_seed_dispatch(ctx: Ctx) -> Outcome:
    """Move an xformers causal bias to the device under inference_mode, and call the
    ``aten.to.dtype_layout`` overload on a plain tensor (the seed's failing dispatch)."""
    torch = ctx.torch()
    device = ctx.device()
    notes = []
    xf_version = dist_version("xformers")
    with torch.inference_mode():
        if xf_version is not None:
            try:
                attn_bias = importlib.import_module("xformers.ops.fmha.attn_bias")
            except Exception as exc:
                return fail(
                    f"xformers {xf_version}: xformers.ops.fmha.attn_bias does not import: "
                    f"{first_line(exc)}",
                    import_remedy(exc) or "F2",
                )
            bias = attn_bias.LowerTriangularMask()
            try:
                bias.to(device)
            except Exception as exc:
                return fail(
                    f"xformers {xf_version}: LowerTriangularMask().to({device!r}) under "
                    f"inference_mode raised {first_line(exc)}",
                    "F1",
                    xformers=xf_version,
                    device=device,
                    error=error_text(exc)[:2000],
                )
            notes.append(f"xformers {xf_version} LowerTriangularMask().to({device!r}) ok")
        else:
            notes.append("xformers not installed (bias part not applicable)")
        x = torch.ones(4, 4)
        try:
            y = torch.ops.aten.to.dtype_layout(
                x, dtype=torch.float16, layout=torch.strided, device=torch.device(device)
            )
        except Exception as exc:
            return fail(
                f"torch.ops.aten.to.dtype_layout raised {first_line(exc)}", "F1", device=device
            )
        if y.dtype != torch.float16 or y.device.type != device:
            return fail(f"aten.to.dtype_layout gave {y.dtype} on {y.device}", "F1")
        notes.append(f"aten.to.dtype_layout(float16, strided, {device}) ok")
    return ok("; ".join(notes), xformers=xf_version, device=device)


def _cpp_lib_json(xformers: Any) -> dict[str, Any] | None:
    path = Path(xformers.__file__).parent / "cpp_lib.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cuda_from_int(value: Any) -> str | None:
    if isinstance(value, int) and value > 0:
        return f"{value // 100}.{value % 100}"
    return None


def _build_info(xformers: Any) -> tuple[str | None, str | None]:
    info = _cpp_lib_json(xformers) or {}
    version = info.get("version") or {}
    return version.get("torch"), _cuda_from_int(version.get("cuda"))


def _major(cuda: str | None) -> str | None:
    return cuda.split(".")[0] if cuda else None


def _extension_remedy(torch: Any, xformers: Any, text: str) -> str:
    _, build_cuda = _build_info(xformers)
    torch_cuda = getattr(torch.version, "cuda", None)
    m = re.search(r"lib(?:cudart|cublas|cudnn)\.so\.([0-9]+)", text)
    if torch_cuda and build_cuda and _major(torch_cuda) != _major(build_cuda):
        return "F17"
    if torch_cuda and m and m.group(1) != _major(torch_cuda):
        return "F17"
    return "F2"


def check_xformers_extension(ctx: Ctx) -> Outcome:
    xformers = _xformers(ctx)
    torch = ctx.torch()
    version = getattr(xformers, "__version__", dist_version("xformers"))
    try:
        cpp_lib = importlib.import_module("xformers._cpp_lib")
    except Exception as exc:
        return fail(
            f"xformers {version}: xformers._cpp_lib does not import: {first_line(exc)}", "F2"
        )
    load_exc = getattr(cpp_lib, "_cpp_library_load_exception", None)
    loaded = load_exc is None and bool(getattr(xformers, "_has_cpp_library", True))
    build_torch, build_cuda = _build_info(xformers)
    built = f"built for torch {build_torch or '?'} / CUDA {build_cuda or '?'}"
    if loaded:
        return ok(f"xformers {version}: C++/CUDA extension loaded ({built})", xformers=version)
    text = error_text(load_exc) if load_exc is not None else "xformers._has_cpp_library is False"
    return fail(
        f"xformers {version}: C++/CUDA extension not loaded ({built}; you have torch "
        f"{torch.__version__}): {with_cause(load_exc) if load_exc is not None else text}",
        _extension_remedy(torch, xformers, text),
        xformers=version,
        error=text[:2000],
    )


def check_xformers_build(ctx: Ctx) -> Outcome:
    xformers = _xformers(ctx)
    torch = ctx.torch()
    build_torch, build_cuda = _build_info(xformers)
    if build_torch is None:
        raise Skip(
            "xformers has no cpp_lib.json build record (a source or conda build)", required=False
        )
    cpp_lib = sys.modules.get("xformers._cpp_lib")
    loaded = cpp_lib is not None and getattr(cpp_lib, "_cpp_library_load_exception", None) is None
    torch_cuda = getattr(torch.version, "cuda", None)
    data = {
        "build_torch": build_torch,
        "build_cuda": build_cuda,
        "torch": torch.__version__,
        "torch_cuda": torch_cuda,
    }
    have = (
        f"built for torch {build_torch} with CUDA {build_cuda}; you have torch {torch.__version__}"
    )
    if build_cuda and torch_cuda and _major(build_cuda) != _major(torch_cuda):
        text = f"CUDA major differs: {have} (CUDA {torch_cuda})"
        if loaded:
            return Outcome("warn", text + "; the extension loaded anyway", "F17", data=data)
        return fail(text, "F17", **data)
    if build_cuda and not torch_cuda:
        return fail(f"{have} (no CUDA)", "F2", **data)
    if build_torch.split("+")[0] != str(torch.__version__).split("+")[0]:
        if loaded:
            return Outcome(
                "warn", have + " (the extension loaded: stable-ABI build)", "F2", data=data
            )
        return fail(have, "F2", **data)
    return ok(have, **data)


def _xf_tolerances(
    torch: Any, dtype_name: str
) -> tuple[tuple[float, float], tuple[float, float], str]:
    try:
        common = importlib.import_module("xformers.ops.fmha.common")
        dtype = getattr(torch, dtype_name)
        fw = common.AttentionFwOpBase
        bw = common.AttentionBwOpBase
        return (
            (float(fw.ERROR_ATOL[dtype]), float(fw.ERROR_RTOL.get(dtype, 1e-5))),
            (float(bw.ERROR_ATOL[dtype]), float(bw.ERROR_RTOL.get(dtype, 1e-5))),
            "xformers.ops.fmha.common",
        )
    except Exception:
        return XF_FW_TOL[dtype_name], XF_BW_TOL[dtype_name], "probe defaults (xformers 0.0.35)"


def _violations(torch: Any, got: Any, ref: Any, atol: float, rtol: float) -> tuple[int, float]:
    diff = (got.float() - ref).abs()
    bad = int((diff > atol + rtol * ref.abs()).sum().item()) + int(
        (~torch.isfinite(got)).sum().item()
    )
    return bad, float(diff.max().item())


def _attention(ctx: Ctx, dtype_name: str) -> Outcome:
    xformers = _xformers(ctx)
    torch = ctx.need_gpu()
    if dtype_name == "bfloat16" and not bf16_native(torch):
        raise Skip("this GPU has no native bf16 (compute capability < 8.0)", required=False)
    version = getattr(xformers, "__version__", "?")
    xops = importlib.import_module("xformers.ops")
    dtype = getattr(torch, dtype_name)
    B, M, H, K = 2, 1024, 8, 128
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(B, M, H, K, device="cuda", dtype=dtype, generator=gen) for _ in range(3)
    )
    grad = torch.randn(B, M, H, K, device="cuda", dtype=dtype, generator=gen)
    fw_tol, bw_tol, tol_source = _xf_tolerances(torch, dtype_name)
    cap = torch.cuda.get_device_capability(0)
    qx, kx, vx = (t.clone().requires_grad_(True) for t in (q, k, v))
    try:
        out = xops.memory_efficient_attention(qx, kx, vx, attn_bias=xops.LowerTriangularMask())
        out.backward(grad)
        torch.cuda.synchronize()
    except Exception as exc:
        text = error_text(exc)
        cpp_lib = sys.modules.get("xformers._cpp_lib")
        load_exc = getattr(cpp_lib, "_cpp_library_load_exception", None)
        load_text = error_text(load_exc) if isinstance(load_exc, BaseException) else None
        ext_remedy = (
            _extension_remedy(torch, xformers, load_text) if load_text is not None else None
        )
        detail = f"xformers {version} memory_efficient_attention {dtype_name}: {first_line(exc)}"
        if load_exc is not None and isinstance(load_exc, BaseException):
            detail += f"; the C++/CUDA extension did not load: {with_cause(load_exc)}"
        return fail(
            detail[:900], attention_remedy(text, load_text, ext_remedy, int(cap[0])), error=text
        )
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        qf, kf, vf = (t.float().requires_grad_(True) for t in (q, k, v))
        qt, kt, vt = (t.transpose(1, 2) for t in (qf, kf, vf))
        scores = (qt * K**-0.5) @ kt.transpose(-2, -1)
        causal = torch.ones(M, M, device="cuda", dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        ref = (scores.softmax(-1) @ vt).transpose(1, 2)
        ref.backward(grad.float())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    results = {}
    bad_total = 0
    for name, got, want, (atol, rtol) in (
        ("out", out, ref, fw_tol),
        ("dq", qx.grad, qf.grad, bw_tol),
        ("dk", kx.grad, kf.grad, bw_tol),
        ("dv", vx.grad, vf.grad, bw_tol),
    ):
        bad, max_abs = _violations(torch, got.detach(), want.detach(), atol, rtol)
        bad_total += bad
        results[name] = {"max_abs": max_abs, "violations": bad, "atol": atol, "rtol": rtol}
    summary = ", ".join(f"{n} {r['max_abs']:.2e}" for n, r in results.items())
    text = (
        f"xformers {version} causal fwd+bwd B{B} M{M} H{H} K{K} {dtype_name} vs float32 (TF32 off): "
        f"max abs {summary}; {bad_total} elements outside tolerance"
    )
    data = {"results": results, "tolerances_from": tol_source}
    if bad_total:  # a numerical mismatch: no known issue explains it
        return fail(text, None, **data)
    return ok(text, **data)


def check_xformers_attention_fp16(ctx: Ctx) -> Outcome:
    return _attention(ctx, "float16")


def check_xformers_attention_bf16(ctx: Ctx) -> Outcome:
    return _attention(ctx, "bfloat16")


# ----------------------------------------------------------------------------- triton, bnb


def check_triton_kernel(ctx: Ctx) -> Outcome:
    if not installed("triton"):
        return fail("triton is not installed (Unsloth's kernels need it)")
    torch = ctx.need_gpu()
    kernel_path = Path(ctx.args.kernel)
    try:
        spec = importlib.util.spec_from_file_location(
            "conda_unsloth_probe_triton_kernel", kernel_path
        )
        if spec is None or spec.loader is None:
            return fail(f"cannot load the kernel file {kernel_path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        exact, detail = module.run_add(torch, "cuda")
    except Exception as exc:
        text = error_text(exc)
        remedy, extra = triton_remedy(text)
        return fail(
            f"triton kernel failed: {with_cause(exc)[:400]}" + (f"; {extra}" if extra else ""),
            remedy,
            error=text[:2000],
        )
    if not exact:
        return fail(detail + " (result differs from torch)", None)
    return ok(detail, kernel=str(kernel_path))


def check_bnb_4bit(ctx: Ctx) -> Outcome:
    if not installed("bitsandbytes"):
        return fail("bitsandbytes is not installed (4-bit loading needs it)")
    torch = ctx.need_gpu()
    try:
        bnb = importlib.import_module("bitsandbytes")
        F = importlib.import_module("bitsandbytes.functional")
    except Exception as exc:
        return fail(f"import bitsandbytes failed: {first_line(exc)[:300]}", "F11")
    try:
        gen = torch.Generator(device="cuda").manual_seed(0)
        w = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16, generator=gen)
        qw, state = F.quantize_4bit(w, quant_type="nf4", blocksize=64)
        deq = F.dequantize_4bit(qw, state)
        rt = float((torch.linalg.norm((deq - w).float()) / torch.linalg.norm(w.float())).item())
        x = torch.randn(16, 1024, device="cuda", dtype=torch.bfloat16, generator=gen)
        y = bnb.matmul_4bit(x, qw.t(), quant_state=state)
        ref = x.float() @ deq.float().t()
        mm = float((torch.linalg.norm(y.float() - ref) / torch.linalg.norm(ref)).item())
        torch.cuda.synchronize()
    except Exception as exc:
        return fail(
            f"bitsandbytes 4-bit failed: {first_line(exc)[:300]}",
            "F11",
            error=error_text(exc)[:2000],
        )
    version = getattr(bnb, "__version__", "?")
    text = (
        f"bitsandbytes {version}: nf4 round trip rel. error {rt:.4f} (limit {BNB_ROUNDTRIP_TOL}), "
        f"matmul_4bit rel. error {mm:.2e} (limit {BNB_MATMUL_TOL})"
    )
    data = {"roundtrip": rt, "matmul": mm}
    if not (rt <= BNB_ROUNDTRIP_TOL and mm <= BNB_MATMUL_TOL):
        return fail(text, "F11", **data)
    return ok(text, **data)


# ----------------------------------------------------------------------------- unsloth


def check_unsloth_import(ctx: Ctx) -> Outcome:
    if not installed("unsloth"):
        return fail("unsloth is not installed")
    for key, value in UNSLOTH_ENV.items():
        os.environ.setdefault(key, value)
    try:
        unsloth = importlib.import_module("unsloth")
    except BaseException as exc:
        text = error_text(exc)
        torch = sys.modules.get("torch")
        torch_cuda = getattr(torch.version, "cuda", None) if torch is not None else None
        remedy = unsloth_remedy(text, torch_cuda) or import_remedy(exc)
        return fail(f"import unsloth failed: {first_line(exc)[:400]}", remedy, error=text[:2000])
    device_type = getattr(unsloth, "DEVICE_TYPE", None)
    if device_type is None:
        with contextlib.suppress(Exception):
            device_type = importlib.import_module("unsloth_zoo.device_type").DEVICE_TYPE
    version = getattr(unsloth, "__version__", dist_version("unsloth"))
    if device_type != "cuda":
        return fail(
            f"unsloth {version} imported with DEVICE_TYPE={device_type!r}, not 'cuda'", "F18"
        )
    return ok(f"unsloth {version} imported, DEVICE_TYPE='cuda'", version=version)


# ----------------------------------------------------------------------------- registry


class Spec:
    def __init__(
        self,
        id: str,
        group: str,
        func: Callable[[Ctx], Outcome],
        title: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.id = id
        self.group = group
        self.func = func
        self.title = title
        self.timeout = timeout


CHECKS = [
    Spec("torch.import", "torch", check_torch_import, "torch imports"),
    Spec(
        "torch.cuda_build",
        "torch",
        check_torch_cuda_build,
        "torch is a CUDA build of the expected CUDA",
    ),
    Spec("torch.single_dist", "torch", check_torch_single_dist, "exactly one torch distribution"),
    Spec("gpu.visible", "torch", check_gpu_visible, "a GPU is visible (and the driver)"),
    Spec("gpu.arch", "torch", check_gpu_arch, "torch has kernels for the GPU arch"),
    Spec("matmul.fp32", "torch", check_matmul_fp32, "fp32 matmul vs float64"),
    Spec("matmul.fp16", "torch", check_matmul_fp16, "fp16 matmul vs float64"),
    Spec("matmul.bf16", "torch", check_matmul_bf16, "bf16 matmul vs float64"),
    Spec("sdpa.backends", "torch", check_sdpa_backends, "PyTorch SDPA backends (information)"),
    Spec(
        "seed.dispatch",
        "xformers",
        check_seed_dispatch,
        "bias .to(device) / aten.to.dtype_layout under inference_mode",
    ),
    Spec(
        "xformers.extension",
        "xformers",
        check_xformers_extension,
        "xformers C++/CUDA extension loaded",
    ),
    Spec(
        "xformers.build",
        "xformers",
        check_xformers_build,
        "xformers built for this torch and CUDA major",
    ),
    Spec(
        "xformers.attention.fp16",
        "xformers",
        check_xformers_attention_fp16,
        "memory_efficient_attention fp16",
    ),
    Spec(
        "xformers.attention.bf16",
        "xformers",
        check_xformers_attention_bf16,
        "memory_efficient_attention bf16",
    ),
    Spec("triton.kernel", "triton", check_triton_kernel, "a Triton kernel compiles and runs"),
    Spec("bnb.4bit", "bnb", check_bnb_4bit, "bitsandbytes 4-bit round trip and matmul"),
    Spec(
        "unsloth.import",
        "unsloth",
        check_unsloth_import,
        "import unsloth, DEVICE_TYPE == 'cuda'",
        UNSLOTH_TIMEOUT,
    ),
]
BY_ID = {c.id: c for c in CHECKS}
GROUP_ORDER = ("unsloth", "torch", "xformers", "bnb", "triton")


def select(tokens: list[str]) -> list[Spec]:
    """Checks named by ids, id prefixes ("xformers", "matmul") or group names; all when empty."""
    if not tokens:
        return list(CHECKS)
    chosen: dict[str, Spec] = {}
    for token in tokens:
        hits = [
            c for c in CHECKS if c.id == token or c.id.startswith(token + ".") or c.group == token
        ]
        if not hits:
            raise ValueError(f"unknown check {token!r} (known: {', '.join(BY_ID)})")
        for c in hits:
            chosen[c.id] = c
    return [c for c in CHECKS if c.id in chosen]


def run_one(spec: Spec, ctx: Ctx) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        out = spec.func(ctx)
    except Skip as s:
        out = Outcome("skip", s.detail, remedy=s.remedy, required=s.required)
    except Failed as f:
        out = fail(f.detail, f.remedy)
    except BaseException as exc:  # a check must never take the worker down
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        out = fail(f"check crashed: {first_line(exc)[:300]}", None, traceback="".join(tb)[-2000:])
    return {
        "id": spec.id,
        "title": spec.title,
        "status": out.status,
        "required": out.required,
        "seconds": round(time.perf_counter() - t0, 3),
        "detail": " ".join(out.detail.split())[:1000],
        "remedy": out.remedy,
        "data": jsonable(out.data),
    }


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def worker(args: argparse.Namespace) -> NoReturn:
    """Run the given checks in this process, one JSON line per event to ``--progress``, then
    ``os._exit(0)``."""
    ctx = Ctx(args)
    specs = [BY_ID[i] for i in args.checks.split(",") if i]
    with open(args.progress, "a", encoding="utf-8") as prog:
        for spec in specs:
            prog.write(json.dumps({"event": "start", "id": spec.id, "t": time.time()}) + "\n")
            prog.flush()
            result = run_one(spec, ctx)
            prog.write(json.dumps({"event": "result", "result": result}) + "\n")
            prog.flush()
    # every result is written: leave without the interpreter's shutdown, which with torch,
    # CUDA and unsloth loaded takes seconds (atexit handlers, threads, CUDA teardown) that
    # would count against the verification; the supervisor kills a worker that hangs here
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


# ----------------------------------------------------------------------------- supervisor


class Supervisor:
    """The live worker processes of one probe run, so that a signal can stop them all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopped = False
        self.procs: set[subprocess.Popen[bytes]] = set()

    def spawn(
        self, cmd: list[str], env: dict[str, str], log: Any, cwd: Path | None = None
    ) -> subprocess.Popen[bytes] | None:
        with self.lock:
            if self.stopped:
                return None
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: killpg takes its children too
            )
            self.procs.add(proc)
            return proc

    def done(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.procs.discard(proc)

    def stop(self) -> None:
        """No new workers; kill every live one (and its process group)."""
        with self.lock:
            self.stopped = True
            procs = list(self.procs)
        for proc in procs:
            kill_group(proc)


# after a worker reported its last result: how long it may take to exit before it is killed
EXIT_GRACE = 10.0


class GroupRunner:
    """Runs one group's checks in worker processes, with a timeout per check."""

    def __init__(
        self,
        specs: list[Spec],
        args: argparse.Namespace,
        workdir: Path,
        index: int,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.specs = specs
        self.args = args
        self.workdir = workdir
        self.index = index
        self.supervisor = supervisor or Supervisor()
        self.results: dict[str, dict[str, Any]] = {}

    def timeout_for(self, spec: Spec) -> float:
        return float(self.args.timeout) if self.args.timeout else spec.timeout

    def run(self) -> None:
        pending = list(self.specs)
        attempt = 0
        while pending and not self.supervisor.stopped:
            attempt += 1
            pending = self._attempt(pending, attempt)

    def _attempt(self, specs: list[Spec], attempt: int) -> list[Spec]:
        stem = self.workdir / f"{self.index}-{specs[0].group}-{attempt}"
        progress = stem.with_suffix(".jsonl")
        log = stem.with_suffix(".log")
        progress.write_text("")
        cmd = [
            sys.executable,
            *(["-I"] if sys.flags.isolated else []),  # workers run like the parent
            str(Path(__file__).resolve()),
            "--worker",
            "--checks",
            ",".join(s.id for s in specs),
            "--progress",
            str(progress),
            "--kernel",
            str(Path(self.args.kernel).absolute()),
        ]
        if self.args.expect_cuda:
            cmd += ["--expect-cuda", self.args.expect_cuda]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if env.get("PYTHONPATH"):  # the workers run in the scratch folder: no relative entries
            env["PYTHONPATH"] = os.pathsep.join(
                str(Path(e).absolute()) if e else e for e in env["PYTHONPATH"].split(os.pathsep)
            )
        if any(s.group == "unsloth" for s in specs):
            for key, value in UNSLOTH_ENV.items():
                env.setdefault(key, value)
        current: str | None = None
        started = time.time()
        timed_out: float | None = None
        never_started = False
        with open(log, "wb") as logf:
            # in the probe's scratch folder: `import unsloth` writes unsloth_compiled_cache/
            # into its working directory, which must not be the user's
            proc = self.supervisor.spawn(cmd, env, logf, cwd=self.workdir)
            if proc is None:
                return []
            try:
                # `started`: when the running check began or, between checks, the last event
                started = time.time()
                all_in_since: float | None = None
                offset = 0
                while True:
                    done = proc.poll() is not None
                    with open(progress, encoding="utf-8") as f:
                        f.seek(offset)
                        chunk = f.read()
                    complete = chunk[: chunk.rfind("\n") + 1] if "\n" in chunk else ""
                    offset += len(complete.encode("utf-8"))
                    for line in complete.splitlines():
                        event = json.loads(line)
                        if event["event"] == "start":
                            current, started = event["id"], time.time()
                        else:
                            self.results[event["result"]["id"]] = event["result"]
                            current, started = None, time.time()
                    if done:
                        break
                    now = time.time()
                    if current is not None:
                        limit = self.timeout_for(BY_ID[current])
                        if now - started > limit:
                            timed_out = limit
                            kill_group(proc)
                            continue
                    elif all(s.id in self.results for s in specs):
                        # every result is in: a worker that hangs on exit is killed
                        all_in_since = all_in_since or now
                        if now - all_in_since > EXIT_GRACE:
                            kill_group(proc)
                            continue
                    else:
                        # before the first check or between two: bounded by the next check's
                        nxt = next(s for s in specs if s.id not in self.results)
                        limit = self.timeout_for(nxt)
                        if now - started > limit:
                            timed_out, never_started, current = limit, True, nxt.id
                            kill_group(proc)
                            continue
                    time.sleep(0.05)
            finally:
                if proc.poll() is None:
                    kill_group(proc)
                self.supervisor.done(proc)
        remaining = [s for s in specs if s.id not in self.results]
        if not remaining or self.supervisor.stopped:
            return []
        head = remaining[0]
        elapsed = round(time.time() - started, 3) if current == head.id else 0.0
        if timed_out is not None and current == head.id:
            detail = f"timed out after {timed_out:g} s"
            if never_started:
                detail += " (the worker process never started the check)"
        else:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            code = proc.returncode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            detail = f"worker process died ({how}): " + " | ".join(tail)[-400:]
        self.results[head.id] = {
            "id": head.id,
            "title": head.title,
            "status": "fail",
            "required": True,
            "seconds": elapsed,
            "detail": detail,
            "remedy": None,
            "data": {"log": str(log)},
        }
        return remaining[1:]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)


def versions() -> dict[str, str | None]:
    names = (
        "torch",
        "xformers",
        "triton",
        "bitsandbytes",
        "unsloth",
        "unsloth_zoo",
        "transformers",
    )
    return {n: dist_version(n) for n in names}


def verdict(checks: list[dict[str, Any]]) -> bool:
    return all(c["status"] in ("pass", "warn") for c in checks if c["required"])


def _raise_interrupted(signum: int, frame: Any) -> None:
    for s in (signal.SIGTERM, signal.SIGINT):  # a second signal must not break the clean-up
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt() -> Any:
    """SIGTERM (Slurm's time limit, scancel) and SIGINT raise ``Interrupted`` in the main
    thread while the workers run (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_all(args: argparse.Namespace, specs: list[Spec]) -> dict[str, Any]:
    t0 = time.perf_counter()
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    groups: dict[str, list[Spec]] = {}
    for s in specs:
        groups.setdefault(s.group, []).append(s)
    ordered = [g for g in GROUP_ORDER if g in groups]
    supervisor = Supervisor()
    interrupted: str | None = None
    merged: dict[str, dict[str, Any]] = {}
    with signals_interrupt(), tempfile.TemporaryDirectory(prefix="conda-unsloth-probe-") as tmp:
        runners = [
            GroupRunner(groups[g], args, Path(tmp), i, supervisor) for i, g in enumerate(ordered)
        ]
        jobs = max(1, int(args.jobs or len(runners)))
        sem = threading.Semaphore(jobs)

        finished = [threading.Event() for _ in runners]

        def go(r: GroupRunner, done: threading.Event) -> None:
            try:
                with sem:
                    r.run()
            finally:
                done.set()

        threads = [
            threading.Thread(target=go, args=(r, e), daemon=True)
            for r, e in zip(runners, finished, strict=True)
        ]
        # wait by polling events, not Thread.join: an exception raised by a signal handler
        # inside join() can mark a live thread as finished (CPython 3.11, bpo-45274 fix)
        try:
            for t in threads:
                t.start()
            while not all(e.is_set() for e in finished):
                time.sleep(0.05)
        except (Interrupted, KeyboardInterrupt) as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
            interrupted = signal.Signals(signum).name
        finally:
            # never leave a worker behind, whatever stopped us
            supervisor.stop()
            deadline = time.monotonic() + 35
            for t, e in zip(threads, finished, strict=True):
                if t.ident is not None:  # started
                    e.wait(max(0.0, deadline - time.monotonic()))
        for r in runners:
            merged.update(r.results)
    for s in specs:
        if s.id not in merged:
            merged[s.id] = {
                "id": s.id,
                "title": s.title,
                "status": "fail",
                "required": True,
                "seconds": 0.0,
                "detail": f"not completed: the probe was stopped by {interrupted or 'a signal'}",
                "remedy": None,
                "data": {},
            }
    checks = [merged[s.id] for s in specs]
    for c in checks:
        c.get("data", {}).pop("log", None)
    summary = {s: sum(1 for c in checks if c["status"] == s) for s in STATUSES}
    passed = verdict(checks)
    return {
        "schema": SCHEMA,
        "probe_version": PROBE_VERSION,
        "created": created,
        "seconds": round(time.perf_counter() - t0, 3),
        "ok": passed,
        "exit_code": 0 if passed else 1,
        "summary": summary,
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "prefix": sys.prefix,
        },
        "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
        "options": {
            "expect_cuda": args.expect_cuda,
            "checks": [s.id for s in specs],
            "timeout": args.timeout,
        },
        "versions": versions(),
        "interrupted": interrupted,
        "checks": checks,
    }


def render(doc: dict[str, Any]) -> str:
    rows = [
        (c["id"], c["status"].upper(), f"{c['seconds']:.1f}", c["remedy"] or "", c["detail"])
        for c in doc["checks"]
    ]
    heads = ("check", "status", "s", "remedy", "detail")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads[:-1])]
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(heads[:-1])) + "  " + heads[-1]]
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + "  " + r[-1])
    verdict_text = "PASSED" if doc["ok"] else "FAILED"
    lines.append(f"verification {verdict_text} in {doc['seconds']:.1f} s")
    if doc.get("interrupted"):
        lines.append(f"(stopped by {doc['interrupted']}: a partial report)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="probe.py", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--json", metavar="OUT", help="write the JSON report to OUT ('-' for stdout)")
    p.add_argument("--expect-cuda", metavar="X.Y", help="the CUDA version torch must be built for")
    p.add_argument("--checks", default="", help="comma-separated check ids, id prefixes or groups")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per check")
    p.add_argument("--jobs", type=int, default=None, help="groups run at once (default: all)")
    p.add_argument(
        "--kernel",
        default=str(Path(__file__).resolve().with_name(KERNEL_FILE)),
        help="the Triton kernel file",
    )
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--progress", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.worker:
        worker(args)
    if args.list:
        for c in CHECKS:
            print(f"{c.id:<26} {c.group:<9} {c.title}")
        return 0
    if args.expect_cuda and not re.fullmatch(r"[0-9]+\.[0-9]+", args.expect_cuda):
        print(f"probe.py: error: --expect-cuda {args.expect_cuda!r} is not X.Y", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.timeout > 0:
        print("probe.py: error: --timeout must be > 0", file=sys.stderr)
        return 2
    try:
        specs = select([t.strip() for t in args.checks.split(",") if t.strip()])
    except ValueError as exc:
        print(f"probe.py: error: {exc}", file=sys.stderr)
        return 2
    doc = run_all(args, specs)
    text = json.dumps(doc, indent=2)
    if args.json == "-":
        print(text)
    else:
        if args.json:
            out = Path(args.json)
            tmp = out.with_name(out.name + ".tmp")
            try:
                tmp.write_text(text + "\n", encoding="utf-8")
                os.replace(tmp, out)
            except OSError as exc:
                print(f"probe.py: error: cannot write {out}: {exc.strerror}", file=sys.stderr)
                return 2
        print(render(doc))
    return int(doc["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
