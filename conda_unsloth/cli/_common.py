"""Options shared by several verbs. Inside conda, conda's own helpers add ``-n/-p/-c``,
``--json``, ``--dry-run`` and ``--yes`` (``conda_unsloth/conda/parser.py``) so they behave as in
``conda create``; standalone we define the same flags with the same ``dest`` names."""

from __future__ import annotations

import argparse


def add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (what to build for)")
    g.add_argument(
        "--profile",
        help="channel profile: pytorch (default; pytorch+nvidia+xformers channels) or conda-forge",
    )
    g.add_argument(
        "--cuda",
        metavar="X.Y",
        help="CUDA version to target (default: from the "
        "driver, else the profile default, 12.1 for pytorch)",
    )
    g.add_argument(
        "--python", metavar="3.X", help="Python version (default: the newest that fits)"
    )
    g.add_argument(
        "--torch", metavar="VERSION", help="PyTorch version (default: newest that fits)"
    )
    g.add_argument(
        "--xformers",
        metavar="VERSION",
        help="xformers version (default: the build made for the chosen pytorch)",
    )
    g.add_argument("--unsloth", metavar="VERSION", help="Unsloth release (default: the profile's)")
    g.add_argument(
        "--gpu-arch",
        metavar="X.Y",
        action="append",
        default=[],
        help="GPU compute capability to check kernels for (repeatable; default: the "
        "GPUs of this host)",
    )
    g.add_argument("--platform", metavar="SUBDIR", help="conda platform (only linux-64)")
    g.add_argument("--knowledge", metavar="DIR", help=argparse.SUPPRESS)


def add_prefix_options(p: argparse.ArgumentParser, conda: bool) -> None:
    if conda:
        from ..conda.parser import add_prefix_options as conda_prefix

        conda_prefix(p)
        return
    g = p.add_argument_group("target environment").add_mutually_exclusive_group()
    g.add_argument("-n", "--name", help="name of the environment")
    g.add_argument("-p", "--prefix", help="full path to the environment location")


def add_channel_options(p: argparse.ArgumentParser, conda: bool) -> None:
    """``-c`` replaces the profile's channels (strict priority, in the order given); the
    profile's channels, not .condarc's, are what a plan solves with."""
    g = p.add_argument_group("channel customization")
    g.add_argument(
        "-c",
        "--channel",
        action="append",
        dest="channel",
        metavar="CHANNEL",
        help="solve with these channels INSTEAD OF the profile's (repeatable; strict priority "
        "in the order given; names, URLs, file:// URLs and paths; .condarc channels are never "
        "used)",
    )
    g.add_argument(  # conda's habit `-c X --override-channels` is what -c already does
        "--override-channels",
        action="store_true",
        help=argparse.SUPPRESS,
    )


def add_output_options(p: argparse.ArgumentParser, conda: bool) -> None:
    """``--json``, ``-q``, ``-d/--dry-run`` (a dry run writes nothing, ever) and ``-y``."""
    if conda:
        from ..conda.parser import add_output_options as conda_output

        conda_output(p)
        return
    g = p.add_argument_group("output, prompt, and flow control")
    g.add_argument("--json", action="store_true", help="report as one JSON document on stdout")
    g.add_argument("-q", "--quiet", action="store_true", help="do not print progress")
    g.add_argument(
        "-d", "--dry-run", action="store_true", help="only show what would be done; write nothing"
    )
    g.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
