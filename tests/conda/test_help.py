"""Help inside conda lists only options the verb acts on (issue 14 item 7).

Before (55fd3db): `conda unsloth solve --help` listed conda's `--use-local`, `--repodata-fn`,
`--repodata-use-zst`, ... (ignored) and said `-c` adds to the .condarc channels; cebe630 still
listed `-y/--yes` for every verb (only `create` asks) and `--console`/`-v` for verbs that run no
conda code, and `doctor` took `--dry-run`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conda_unsloth import cli
from conda_unsloth.cli import VERBS
from conda_unsloth.conda.parser import output_dests
from tests.conda import realconda
from tests.conftest import CondaSandbox

pytestmark = pytest.mark.conda

CLI = Path(cli.__file__).parent  # the installed package's verbs (the lane installs it)
# conda's option strings per dest (conda.cli.helpers.add_output_and_prompt_options)
FLAGS = {
    "json": "--json",
    "console": "--console",
    "verbosity": "--verbose",
    "quiet": "--quiet",
    "dry_run": "--dry-run",
    "yes": "--yes",
}
NEVER = ("--use-local", "--repodata-fn", "--repodata-use-zst", "--no-lock", "--experimental")


def help_text(tmp_path: Path, verb: str) -> str:
    r = realconda.conda(CondaSandbox(tmp_path / "_conda"), "unsloth", verb, "--help")
    assert r.code == 0, r
    return r.out


def options(text: str) -> set[str]:
    return set(re.findall(r"(?:^|[\s\[,])(--[a-z][a-z-]*)", text))


@pytest.mark.parametrize("verb", [v for v, _, _ in VERBS])
def test_help_lists_only_the_output_options_the_verb_reads(tmp_path: Path, verb: str) -> None:
    shown = options(help_text(tmp_path, verb))
    for dest, flag in FLAGS.items():
        assert (flag in shown) is (dest in output_dests(verb)), (verb, flag)
    assert not shown & set(NEVER)


@pytest.mark.parametrize("verb", [v for v, _, _ in VERBS])
def test_the_table_matches_what_each_verb_reads(verb: str) -> None:
    """output_dests(verb) vs the verb module's source: json/quiet/dry_run/yes are kept exactly
    where the verb reads them; --console and -v only where it runs conda's solver or
    transaction (runtime.solver / pipeline.build)."""
    source = (CLI / f"{verb}.py").read_text()
    reads = {
        d
        for d in ("json", "quiet", "dry_run", "yes")
        if re.search(rf'args\.{d}\b|getattr\(args, "{d}"', source)
    }
    if "_shared.progress(args)" in source:
        reads.add("quiet")
    runs_conda = "runtime.solver(" in source or "pipeline.build(" in source
    wanted = set(output_dests(verb))
    assert wanted - {"console", "verbosity"} == reads
    assert ({"console", "verbosity"} <= wanted) is runs_conda


def test_solve_and_create_help_say_what_c_does(tmp_path: Path) -> None:
    for verb in ("solve", "create"):
        text = " ".join(help_text(tmp_path, verb).split())
        assert "INSTEAD OF the profile's" in text
        assert ".condarc channels are never used" in text


def test_an_option_the_verb_does_not_have_is_refused(tmp_path: Path) -> None:
    r = realconda.conda(
        CondaSandbox(tmp_path / "_conda").make(), "unsloth", "solve", "--yes", "--cuda", "12.1"
    )
    assert r.code == 2 and "unrecognized arguments: --yes" in r.err, r


def test_help_does_not_list_the_compat_only_override_channels(tmp_path: Path) -> None:
    """`--override-channels` is accepted and changes nothing (-c already replaces the
    profile's channels): needs the cli/_common.py change in h14-for-lead.md (help=SUPPRESS)."""
    for verb in ("solve", "create"):
        assert "--override-channels" not in options(help_text(tmp_path, verb))
