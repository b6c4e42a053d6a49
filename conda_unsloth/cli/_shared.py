"""Glue shared by verbs: knowledge + host + request from parsed args, output helpers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any, TextIO

    from rich.console import Console

    from ..host import Host
    from ..knowledge import Knowledge
    from ..pipeline import Step
    from ..runtime import Runtime
    from ..select import Request, Selection
    from ..spec import EnvSpec


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


def step(args: argparse.Namespace, runtime: Runtime) -> Step:
    """Long steps: a spinner with the elapsed time on a terminal (standalone), a plain
    ``==>`` line otherwise (logs, --quiet/--json: nothing; inside conda: conda prints its own
    progress for the transaction)."""
    import contextlib
    import time

    from ..pipeline import announce

    say = progress(args)
    if runtime.conda or args.json or getattr(args, "quiet", False) or not sys.stderr.isatty():
        return announce(say)
    err = console(sys.stderr)

    @contextlib.contextmanager
    def spin(msg: str) -> Iterator[None]:
        t0 = time.monotonic()
        with err.status(msg, spinner="line"):
            yield
        say(f"{msg}: done in {time.monotonic() - t0:.1f} s")

    return spin


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
            echo(f"==> {msg}", sys.stderr)
            sys.stderr.flush()

    return say


def console(out: TextIO | None = None) -> Console:
    """A rich console on ``out`` (stdout). On a terminal: its width, colour unless ``NO_COLOR``.
    Not a terminal (a log, a pipe): no colour and no wrapping (``COLUMNS`` still sets a width),
    so a line that is grepped for stays one line."""
    import os

    from rich.console import Console

    file = out or sys.stdout
    width = None
    if not (hasattr(file, "isatty") and file.isatty()):
        try:
            width = int(os.environ.get("COLUMNS", "")) or None
        except ValueError:
            width = None
        width = width or 100_000
    return Console(
        file=file,
        width=width,
        highlight=False,
        soft_wrap=False,
        emoji=False,
        markup=False,
    )


def _tty(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def echo(text: str, out: TextIO | None = None) -> None:
    """A line of output: wrapped at a terminal's width (a long path is folded, never cut);
    into a log or a pipe as it is."""
    stream = out or sys.stdout
    if not _tty(stream):
        print(text, file=stream)
        return
    console(stream).print(text, overflow="fold")


WHY_MIN = 30  # below this, the "why" column goes to a list of its own under the table


def table(
    rows: list[tuple[str, ...]],
    headers: tuple[str, ...],
    out: TextIO | None = None,
    *,
    why: str = "why",
) -> None:
    """Rows as columns. No cell is ever cut. On a terminal (rich): the table fits its width,
    the column named ``why`` (free text) folds onto continuation lines, and on a terminal too
    narrow for it the table is shown without it, followed by a two-column list of (first cell,
    why). Into a log or a pipe: plain columns two spaces apart, every row whole on one line
    (what grep and diff want; and rich, 30-40 ms of a solve's run, is not imported)."""
    stream = out or sys.stdout
    if not _tty(stream):
        cells = [headers, *rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        stream.write(
            "".join(
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                for r in cells
            )
        )
        return
    from rich.table import Table

    con = console(out)
    has_why = why in headers
    idx = headers.index(why) if has_why else -1
    fixed = [h for h in headers if h != why]
    widths = (
        [max(len(h), *(len(r[headers.index(h)]) for r in rows)) for h in fixed] if rows else []
    )
    room = con.width - sum(widths) - 2 * len(fixed)
    inline = not has_why or room >= WHY_MIN

    def grid(columns: list[str], folded: str | None) -> Table:
        t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for h in columns:
            t.add_column(h, no_wrap=h != folded, overflow="fold", min_width=None)
        return t

    t = grid(list(headers) if inline else fixed, why if inline else None)
    for r in rows:
        t.add_row(*(r if inline else tuple(c for i, c in enumerate(r) if i != idx)))
    con.print(t)
    if inline or not rows:
        return
    legend = grid([headers[0], why], why)
    for r in rows:
        if r[idx]:
            legend.add_row(r[0], r[idx])
    con.print(legend)


def spec_rows(env: EnvSpec) -> list[tuple[str, ...]]:
    """What an environment.yml holds, a row per line (conda specs, then pip requirements)."""
    from ..target import parse_spec

    rows: list[tuple[str, ...]] = []
    for d in env.conda:
        ms = parse_spec(d.spec)
        if ms is None:
            rows.append((d.spec, "", "", "conda", d.why))
            continue
        rows.append((ms.name, ms.version or "*", ms.build, f"conda {ms.channel}".strip(), d.why))
    for d in env.pip:
        if d.spec.startswith("-"):  # a pip option line (-c CONSTRAINTS)
            rows.append((d.spec, "", "", "pip option", d.why))
            continue
        name, _, version = d.spec.partition("==")
        rows.append((name, version, "", "pip", d.why))
    return rows


def print_plan(sel: Selection, env: EnvSpec, out: TextIO | None = None) -> None:
    """The plan: the target line, then every line the environment.yml will hold."""
    out = out or sys.stdout
    t = sel.target
    archs = ", ".join(f"sm_{a.replace('.', '')}" for a in t.archs) or "unknown"
    print(
        f"profile {sel.profile.name} | CUDA {t.cuda} ({t.cuda_source}) | python {sel.python} | "
        f"GPU arch {archs}",
        file=out,
    )
    table(spec_rows(env), ("package", "version", "build", "from", "why"), out)


def activate_hint(name: str | None, prefix: Path, runtime: Runtime) -> str:
    """How this user activates the new env: conda's command inside conda or where conda is
    installed, else micromamba/mamba's, else the env's python."""
    import os
    import shutil
    from pathlib import Path
    from shlex import quote

    target = quote(name or str(prefix))
    if runtime.conda or os.environ.get("CONDA_EXE") or shutil.which("conda"):
        return f"conda activate {target}"
    mamba = os.environ.get("MAMBA_EXE") or shutil.which("micromamba") or shutil.which("mamba")
    if mamba:
        return f"{Path(mamba).name} activate {target}"
    python = quote(f"{prefix}/bin/python")
    return f"{python} -c 'import unsloth'   (activate it with conda or micromamba)"


def print_notices(notices: tuple[str, ...] | list[str]) -> None:
    """``notice: ...`` lines on stderr, wrapped at a terminal's width (not in a log)."""
    for n in notices:
        echo(f"notice: {n}", sys.stderr)


def hinted(obj: Any, runtime: Runtime) -> Any:
    """``obj`` (text, or a JSON document) with each ``conda unsloth ...`` command written as
    the user runs us (:meth:`Runtime.hint` on every string)."""
    if isinstance(obj, str):
        return runtime.hint(obj)
    if isinstance(obj, dict):
        return {k: hinted(v, runtime) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [hinted(v, runtime) for v in obj]
    return obj


def emit_json(doc: dict[str, Any]) -> None:
    import json

    from ..redact import redact_obj

    json.dump(redact_obj(doc), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
