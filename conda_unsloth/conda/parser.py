"""conda's own parser options for our verbs: ``-n/-p`` and the output options (``--json``,
``-v/-q``, ``-d/--dry-run``, ``-y/--yes``) come from ``conda.cli.helpers``, so they behave and
read as in ``conda create``. Channel options are ours in both entry points (see
``cli/_common.add_channel_options``): our ``-c`` replaces the profile's channels, which conda's
helper would describe (and conda would treat) differently."""

from __future__ import annotations

import argparse


def add_prefix_options(p: argparse.ArgumentParser) -> None:
    from conda.cli.helpers import add_parser_prefix

    add_parser_prefix(p)


def add_output_options(p: argparse.ArgumentParser) -> None:
    from conda.cli.helpers import add_output_and_prompt_options

    add_output_and_prompt_options(p)
