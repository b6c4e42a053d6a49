"""The Triton kernel the verification probe compiles and runs (loaded by path, inside the target
environment's python).

``@triton.jit`` functions must be defined in a real ``.py`` file (Triton reads their source), so
the kernel lives here rather than in a string. Standard library plus the env's own ``triton``;
no import of ``conda_unsloth``.
"""

from __future__ import annotations

from typing import Any

import triton  # type: ignore[import-not-found, unused-ignore]
import triton.language as tl  # type: ignore[import-not-found, unused-ignore]

BLOCK = 1024


# Only BLOCK_SIZE is annotated: Triton 2.x reads a parameter's annotation as its type.
@triton.jit  # type: ignore[untyped-decorator, misc, unused-ignore]
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK_SIZE: tl.constexpr):  # type: ignore[no-untyped-def]
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


def run_add(torch: Any, device: str, n: int = 1 << 20) -> tuple[bool, str]:
    """Add two seeded vectors with the kernel; (exact match with torch's sum, detail)."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, device=device, generator=gen)
    y = torch.randn(n, device=device, generator=gen)
    out = torch.empty_like(x)
    grid = (triton.cdiv(n, BLOCK),)
    add_kernel[grid](x, y, out, n, BLOCK_SIZE=BLOCK)
    if device == "cuda":
        torch.cuda.synchronize()
    expected = x + y
    exact = bool(torch.equal(out, expected))
    diff = float((out - expected).abs().max().item())
    return exact, f"triton {triton.__version__}: vector add of {n} floats, max |diff| {diff:g}"
