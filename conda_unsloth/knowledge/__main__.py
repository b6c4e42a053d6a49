"""``python -m conda_unsloth.knowledge [--write | --check] [--dir DIR]``: regenerate or check
bundle.json from the YAML files beside it (checked in full on the way); DIR: a knowledge
directory of your own (``--knowledge DIR`` / ``CONDA_UNSLOTH_KNOWLEDGE``), bundled the same way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import KnowledgeError
from . import BUNDLE, bundle_text, default_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conda_unsloth.knowledge")
    ap.add_argument("--write", action="store_true", help=f"write {BUNDLE}")
    ap.add_argument("--check", action="store_true", help=f"exit 1 when {BUNDLE} is stale")
    ap.add_argument("--dir", default=default_dir(), help="the knowledge directory")
    args = ap.parse_args(argv)
    target = Path(args.dir) / BUNDLE
    try:
        text = bundle_text(args.dir)
    except KnowledgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
        return 0
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if current != text:
        print(f"{target} is stale: python -m conda_unsloth.knowledge --write", file=sys.stderr)
        return 1
    print(f"{target} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
