"""Glue shared by verbs: knowledge + host + request from parsed args, output helpers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, TextIO

    from ..host import Host
    from ..knowledge import Knowledge
    from ..select import Request, Selection


def knowledge(args: argparse.Namespace) -> Knowledge:
    from .. import knowledge as kb

    return kb.load(getattr(args, "knowledge", None))


def request(args: argparse.Namespace) -> Request:
    from ..select import Request

    return Request(
        profile=args.profile,
        cuda=args.cuda,
        python=args.python,
        torch=args.torch,
        xformers=args.xformers,
        unsloth=args.unsloth,
        gpu_archs=tuple(args.gpu_arch or ()),
        platform=args.platform,
    )


def host() -> Host:
    from ..host import detect

    return detect()


def target_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The target flags for ``pipeline.plan_file`` (``--profile --cuda --gpu-arch
    --platform``)."""
    from ..target import split_archs

    return {
        "profile": args.profile,
        "cuda": args.cuda,
        "archs": split_archs(args.gpu_arch or ()),
        "platform": args.platform,
    }


def progress(args: argparse.Namespace) -> Callable[[str], None]:
    """``==> message`` lines on stderr for the long steps (none with --json or --quiet)."""
    quiet = args.json or getattr(args, "quiet", False)

    def say(msg: str) -> None:
        if not quiet:
            print(f"==> {msg}", file=sys.stderr, flush=True)

    return say


def table(
    rows: list[tuple[str, ...]], headers: tuple[str, ...], out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r[: len(widths) - 1]):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    print(fmt.format(*headers), file=out)
    for r in rows:
        print(fmt.format(*r), file=out)


def selection_rows(sel: Selection) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for c in sel.conda_choices():
        rows.append((c.name, c.version or "*", c.build or "", f"conda {c.channel}".strip(), c.why))
    for c in sel.pip_choices():
        rows.append((c.name, c.version, "", "pip", c.why))
    return rows


def print_selection(sel: Selection, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    t = sel.target
    archs = ", ".join(f"sm_{a.replace('.', '')}" for a in t.archs) or "unknown"
    print(
        f"profile {sel.profile.name} · CUDA {t.cuda} ({t.cuda_source}) · python {sel.python} · "
        f"GPU arch {archs}",
        file=out,
    )
    table(selection_rows(sel), ("package", "version", "build", "from", "why"), out)


def print_notices(notices: tuple[str, ...] | list[str]) -> None:
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)


def emit_json(doc: dict[str, Any]) -> None:
    import json

    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
