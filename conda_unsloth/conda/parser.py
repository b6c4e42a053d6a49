"""conda's own parser options for our verbs: ``-n/-p`` and the output options (``--json``,
``-q``, ``-d/--dry-run``, ``-y/--yes``, ``--console``, ``-v``) come from ``conda.cli.helpers``, so
they behave and read as in ``conda create``. Channel options are ours in both entry points (see
``cli/_common.add_channel_options``): our ``-c`` replaces the profile's channels, which conda's
helper would describe (and conda would treat) differently.

A verb's help lists only the options it reads: conda's helper adds all six to every command,
and ``conda unsloth solve -y`` or ``conda unsloth doctor --dry-run`` would be accepted and do
nothing. ``--console`` and ``-v`` steer conda's own reporter and logging, so only the verbs that
run conda's solver or transaction (``create``, ``solve``) have them (``conda -v unsloth ...``
still works for every verb: conda's top-level parser has ``-v``).

Our own ``--offline`` is also a conda setting: conda builds its context from the parsed
arguments (``context.__init__(argparse_args=args)``), where a flag's ``False`` default would
override ``offline: true`` from .condarc or ``CONDA_OFFLINE``. :func:`defer_to_context` gives
such flags conda's "not given" default, and :func:`settle` puts conda's merged value back into
``args`` before the verb runs."""

from __future__ import annotations

import argparse

# conda's output options (by dest) each verb reads; a verb not listed gets DEFAULT_OUTPUT
OUTPUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "create": ("json", "console", "verbosity", "quiet", "dry_run", "yes"),
    "solve": ("json", "console", "verbosity", "quiet", "dry_run"),
    "doctor": ("json", "quiet"),
}
DEFAULT_OUTPUT = ("json", "quiet", "dry_run")
# our options whose dest is a conda context parameter: conda's setting applies unless given
CONTEXT_DESTS = ("offline",)


def add_prefix_options(p: argparse.ArgumentParser) -> None:
    from conda.cli.helpers import add_parser_prefix

    add_parser_prefix(p)


def verb_of(p: argparse.ArgumentParser) -> str:
    """The verb a subparser is for (its prog is ``conda unsloth VERB``)."""
    return p.prog.rsplit(" ", 1)[-1]


def output_dests(verb: str) -> tuple[str, ...]:
    return OUTPUT_OPTIONS.get(verb, DEFAULT_OUTPUT)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """conda's "Output, Prompt, and Flow Control Options" (its flags, defaults and help text),
    limited to those :data:`OUTPUT_OPTIONS` says the verb reads."""
    from conda.cli.helpers import add_output_and_prompt_options

    conda_options = argparse.ArgumentParser(add_help=False)
    conda_group = add_output_and_prompt_options(conda_options)
    wanted = output_dests(verb_of(p))
    group = p.add_argument_group(conda_group.title, conda_group.description)
    for action in conda_options._actions:
        if action.dest in wanted:
            group._add_action(action)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.extend(dict.fromkeys(action.choices.values()))  # aliases share a parser
    return out


def defer_to_context(parser: argparse.ArgumentParser) -> None:
    """Give our options that are also conda settings (:data:`CONTEXT_DESTS`) conda's "not
    given" default in every verb, so that conda's context keeps .condarc's value."""
    from conda.common.constants import NULL

    for sub in _subparsers(parser):
        for action in sub._actions:
            if action.dest in CONTEXT_DESTS:
                action.default = NULL


def settle(args: argparse.Namespace) -> None:
    """Conda's merged value (flag, else CONDA_*, else .condarc) of each such option, as a
    plain value in ``args`` for the verb."""
    from conda.base.context import context

    for dest in CONTEXT_DESTS:
        if hasattr(args, dest):
            setattr(args, dest, bool(getattr(context, dest)))
