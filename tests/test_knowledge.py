"""The knowledge base: bundled files load, every row has a source, broken files are refused
with an error naming the file and row."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from ruamel.yaml import YAML

from conda_unsloth import knowledge
from conda_unsloth.errors import KnowledgeError
from tests.typed import present


def _rows(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every mapping in a YAML tree that is a data row (has a version, id or cuda key)."""
    out = []
    if isinstance(node, dict):
        if any(k in node for k in ("version", "id", "cuda", "arch")) and path:
            out.append((path, node))
        for k, v in node.items():
            out += _rows(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _rows(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("name", knowledge.FILES)
def test_every_row_has_a_source(name: str) -> None:
    data = YAML(typ="safe").load((Path(knowledge.default_dir()) / name).read_text())
    rows = _rows(data)
    assert rows, f"{name} has no rows"
    # rows nested inside another row (e.g. a profile's lists) carry their own source too
    missing = [p for p, r in rows if not str(r.get("source", "")).strip()]
    # arch_lists / cuda_builds rows are data rows as well and must have a source
    assert missing == [], f"rows without a source in {name}: {missing}"


def test_bundled_knowledge_loads() -> None:
    kb = knowledge.load()
    assert set(kb.profiles) == {"pytorch", "conda-forge"}
    assert kb.profiles["pytorch"].cudas == ("11.8", "12.1", "12.4")
    assert kb.profiles["pytorch"].default_cuda == "12.1"
    assert {"F1", "F2", "F4", "F10", "F14", "F17", "U1"} <= set(kb.issues)


def test_pytorch_channel_facts_from_compat_research() -> None:
    """Spot-check rows against compat.md, the research they were copied from."""
    p = knowledge.load().profiles["pytorch"]
    assert present(p.pytorch_row("2.5.1"), "2.5.1").triton == "3.1.0"
    assert present(p.pytorch_row("2.3.1"), "2.3.1").cuda == ("11.8", "12.1")
    assert "12.4" in present(p.pytorch_row("2.4.0"), "2.4.0").cuda
    seed = [x for x in p.xformers if x.version in ("0.0.27", "0.0.27.post1")]
    assert [x.known_issue for x in seed] == ["F1", "F1"]
    assert not any("3.12" in x.python for x in p.xformers), "the xformers channel never had py3.12"


def test_companions_satisfy_their_release_ranges() -> None:
    for rel in knowledge.load().releases:
        for name, pin in rel.companions.items():
            spec = rel.requires.get(name)
            if spec:
                assert Version(pin) in SpecifierSet(spec), (rel.version, name, pin, spec)


# ----------------------------------------------------------------------------- broken files


def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in file"
    return text.replace(old, new, 1)


BROKEN: list[tuple[str, str, Callable[[str], str], str]] = [
    ("yaml-syntax", "compat.yaml", lambda t: t + "\n  - [unclosed\n", "YAML syntax error"),
    (
        "missing-source",
        "compat.yaml",
        lambda t: _mutate(t, ", source: 'pytorch.org previous-versions; compat.md 3a, 7a'}", "}"),
        "missing key 'source'",
    ),
    (
        "float-version",
        "compat.yaml",
        lambda t: _mutate(t, "default_cuda: '12.1'", "default_cuda: 12.1"),
        "quoted strings",
    ),
    (
        "unbuilt-default-cuda",
        "compat.yaml",
        lambda t: _mutate(t, "default_cuda: '12.1'", "default_cuda: '12.2'"),
        "default_cuda 12.2 is not built",
    ),
    (
        "xformers-pins-unknown-torch",
        "compat.yaml",
        lambda t: _mutate(
            t, "{version: 0.0.28.post3, pytorch: 2.5.1,", "{version: 0.0.28.post3, pytorch: 2.5.9,"
        ),
        "xformers[12] (0.0.28.post3): pinned to pytorch 2.5.9",
    ),
    (
        "schema-version",
        "compat.yaml",
        lambda t: _mutate(t, "schema_version: 1", "schema_version: 2"),
        "schema_version 2 is not supported",
    ),
    (
        "contradictory-companion",
        "unsloth.yaml",
        lambda t: _mutate(t, "transformers: 4.44.2", "transformers: 4.45.1"),
        "violates this release's own requirement transformers<4.45.0",
    ),
    (
        "unknown-default-release",
        "unsloth.yaml",
        lambda t: _mutate(t, "pytorch: 2024.12.12", "pytorch: 2099.1.1"),
        "release 2099.1.1 is not listed",
    ),
    (
        "unknown-rule-kind",
        "known_issues.yaml",
        lambda t: _mutate(t, "kind: version_in", "kind: magic"),
        "check.kind 'magic'",
    ),
    (
        "bad-severity",
        "known_issues.yaml",
        lambda t: _mutate(t, "severity: error", "severity: fatal"),
        "severity 'fatal'",
    ),
    (
        "selectable-stack-trips-a-known-issue",
        "known_issues.yaml",
        lambda t: _mutate(
            t, "versions: [0.0.27, 0.0.27.post1]", "versions: [0.0.27, 0.0.28.post3]"
        ),
        "known issue F1 (xformers 0.0.28.post3 is one of the affected versions (0.0.27, "
        "0.0.28.post3)) matches profile pytorch CUDA 11.8 with pytorch 2.5.1, python 3.11, "
        "xformers 0.0.28.post3 and unsloth 2024.9.post4, a stack that compat.yaml and "
        "unsloth.yaml allow (and 11 more)",
    ),
    ("not-a-mapping", "known_issues.yaml", lambda t: "- just\n- a list\n", "expected a mapping"),
]


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    d = tmp_path / "kb"
    d.mkdir()
    for f in knowledge.FILES:
        shutil.copy(Path(knowledge.default_dir()) / f, d / f)
    return d


def _load_mutated(kb_dir: Path, file: str, mutate: Callable[[str], str]) -> str:
    """``file`` in ``kb_dir`` changed by ``mutate``; the message loading the knowledge refuses
    it with."""
    target = kb_dir / file
    target.write_text(mutate(target.read_text()))
    with pytest.raises(KnowledgeError) as exc:
        knowledge.load(kb_dir)
    return exc.value.message


@pytest.mark.parametrize(
    ("file", "mutate", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_knowledge_file_is_refused(
    kb_copy: Path, file: str, mutate: Callable[[str], str], message: str
) -> None:
    refused = _load_mutated(kb_copy, file, mutate)
    assert file in refused
    assert message in refused
    assert "\n" not in refused


def test_missing_and_non_utf8_files(kb_copy: Path) -> None:
    (kb_copy / "unsloth.yaml").unlink()
    with pytest.raises(KnowledgeError, match="unsloth.yaml is missing"):
        knowledge.load(kb_copy)
    shutil.copy(Path(knowledge.default_dir()) / "unsloth.yaml", kb_copy / "unsloth.yaml")
    (kb_copy / "compat.yaml").write_bytes(b"schema_version: 1\n\xff\xfe\n")
    with pytest.raises(KnowledgeError, match="not UTF-8"):
        knowledge.load(kb_copy)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="does not exist"):
        knowledge.load(tmp_path / "nope")


def test_edits_of_a_knowledge_directory_are_seen_at_once(kb_copy: Path) -> None:
    assert knowledge.load(kb_copy).profiles["pytorch"].default_cuda == "12.1"
    f = kb_copy / "compat.yaml"
    f.write_text(f.read_text().replace("default_cuda: '12.1'", "default_cuda: '11.8'"))
    assert knowledge.load(kb_copy).profiles["pytorch"].default_cuda == "11.8"


def test_the_bundle_is_the_checked_data_of_the_yaml_files() -> None:
    """bundle.json is generated from the YAML (python -m conda_unsloth.knowledge --write): a
    YAML edit without regenerating fails here, and the bundle loads as the YAML does."""
    bundled = Path(knowledge.default_dir()) / knowledge.BUNDLE
    assert bundled.read_text(encoding="utf-8") == knowledge.bundle_text(knowledge.default_dir())
    from conda_unsloth.knowledge.loader import load_yaml

    assert knowledge.load() == load_yaml(knowledge.default_dir())


def test_a_directory_of_ones_own_can_be_bundled_and_a_stale_bundle_is_not_used(
    kb_copy: Path,
) -> None:
    """`python -m conda_unsloth.knowledge --write --dir DIR` bundles a copy; the bundle is read
    only while it matches the YAML beside it (an edit after bundling is seen at once)."""
    from conda_unsloth.knowledge.__main__ import main

    assert main(["--write", "--dir", str(kb_copy)]) == 0
    assert (kb_copy / knowledge.BUNDLE).is_file()
    assert main(["--check", "--dir", str(kb_copy)]) == 0
    assert knowledge.load(kb_copy).profiles["pytorch"].default_cuda == "12.1"
    f = kb_copy / "compat.yaml"
    f.write_text(f.read_text().replace("default_cuda: '12.1'", "default_cuda: '11.8'"))
    assert main(["--check", "--dir", str(kb_copy)]) == 1
    assert knowledge.load(kb_copy).profiles["pytorch"].default_cuda == "11.8"


def test_a_broken_bundle_is_a_knowledge_error(tmp_path: Path) -> None:
    from conda_unsloth.knowledge.loader import load_bundle

    (tmp_path / knowledge.BUNDLE).write_text('{"files": {}}')
    with pytest.raises(KnowledgeError, match="--write"):
        load_bundle(str(tmp_path))


def test_specifier_table_answers_as_packaging_does() -> None:
    """Selection asks `satisfies` instead of packaging: the table computed at load must give
    packaging's answers, and a pair outside it must still be answered by packaging."""
    kb = knowledge.load()
    assert len(kb.specifier_table) > 50
    for (spec, version), answer in kb.specifier_table.items():
        assert answer is (Version(version) in SpecifierSet(spec)), (spec, version)
    answers = set(kb.specifier_table.values())
    assert answers == {True, False}, "the bundled releases both accept and refuse versions"
    for version, spec in [("2.3.9", ">=2.4.0"), ("2.4.9", ">=2.4.0"), ("3.13", "<3.13,>=3.9")]:
        assert (spec, version) not in kb.specifier_table
        assert kb.satisfies(version, spec) is (Version(version) in SpecifierSet(spec))


# ----------------------------------------------------------------------------- issue 17

KB = knowledge.load()
DATA = Path(__file__).resolve().parent / "data"


def _every_plan() -> list[Any]:
    """Every selection the knowledge allows: each (profile, CUDA, python, --torch), through
    select() on a host without a GPU."""
    from conda_unsloth.errors import SelectionError
    from conda_unsloth.host import Host
    from conda_unsloth.select import Request, select

    host = Host(platform="linux-64", glibc="2.36")
    plans = []
    for prof in KB.profiles.values():
        for cuda in prof.cudas:
            for py in (None, *prof.pythons):
                for torch in (None, *(r.version for r in prof.pytorch)):
                    try:
                        req = Request(profile=prof.name, cuda=cuda, python=py, torch=torch)
                        plans.append(select(req, host, KB))
                    except SelectionError:
                        continue
    return plans


PLANS = _every_plan()


def test_every_emittable_pytorch_and_xformers_build_has_evidence() -> None:
    """Each pytorch / xformers build any plan writes has a row in evidence.yaml: never one
    known not to exist; a confirmed row's exact build matches the plan's pin; a plan that
    uses an unconfirmed one says so."""
    import fnmatch

    assert len(PLANS) > 50
    emitted = set()
    for sel in PLANS:
        p = sel.profile
        for c in sel.conda_choices():
            if c.name not in ("pytorch", "xformers"):
                continue
            cuda = sel.cuda if c.name == "pytorch" else p.xformers_build_cuda(sel.cuda)
            torch = sel.pytorch.version if c.name == "xformers" else None
            e = KB.evidence_for(c.channel, c.name, c.version, cuda, sel.python, torch)
            assert e is not None, (c.channel, c.name, c.version, c.build, sel.python)
            assert e.status != "absent", (e.name, e.version, e.build)
            if e.status == "confirmed":
                assert fnmatch.fnmatchcase(e.build, c.build), (e.build, c.build)
            else:
                assert e in sel.unconfirmed and any(e.note in n for n in sel.notices)
            emitted.add((c.channel, c.name, c.version, c.build, sel.python))
    assert ("conda-forge", "xformers", "0.0.30", "cuda_126*", "3.12") not in emitted
    assert ("conda-forge", "xformers", "0.0.31", "cuda_126*", "3.12") in emitted


def test_evidence_rows_agree_with_their_own_depends() -> None:
    """A row's pytorch (what the planner matches) is inside its depends' pytorch pin, its
    pythons inside its python pin; a confirmed row names an exact build and its URL."""
    for e in KB.evidence:
        if e.status == "confirmed":
            assert "*" not in e.build and e.url.endswith((".conda", ".tar.bz2")), e
            assert e.build in e.url
        if e.name == "xformers" and e.pytorch and e.depends:
            pins = [
                d.split(" ", 1)[1]
                for d in e.depends
                if d.startswith("pytorch ") and "cuda" not in d
            ]
            for pin in pins:
                if pin.endswith(".*"):
                    assert pin[:-2] == e.pytorch or pin[:-2].startswith(e.pytorch + "."), e
                else:
                    lowest = f"{e.pytorch}.0" if e.pytorch.count(".") == 1 else e.pytorch
                    assert Version(lowest) in SpecifierSet(pin), (e.version, e.build, pin)
        for py in e.python:
            for d in e.depends:
                if d.startswith("python "):
                    assert Version(py) in SpecifierSet(d.split(" ", 1)[1]), (e.build, py, d)


def test_requires_python_rows_are_pypis() -> None:
    """unsloth.yaml's Requires-Python of every pin equals what PyPI's JSON API returned for
    that version (saved in tests/data/pypi-requires-python.json)."""
    pypi = json.loads((DATA / "pypi-requires-python.json").read_text())["releases"]
    seen = 0
    for rel in KB.releases:
        for q in rel.requires_python:
            files = pypi[q.name][q.version]
            assert {f["requires_python"] or "" for f in files} == {q.python}, (q.name, q.version)
            seen += 1
    assert seen == sum(1 + len(r.companions) for r in KB.releases)


def test_new_gpu_archs_and_their_first_cuda() -> None:
    assert {a: KB.gpu_archs[a].min_cuda for a in ("10.3", "11.0", "12.1")} == {
        "10.3": "12.9",
        "11.0": "13.0",
        "12.1": "12.9",
    }
    assert KB.gpu_archs["9.0"].name == "Hopper (H100, H200)"  # a quoted name, not split
    # an arch the table does not know is never served, whatever PTX a build has
    assert not KB.arch_supported("8.7", "11.8", "3.7+PTX 5.0 6.0 6.1 7.0 7.5 8.0 8.6 9.0")
    assert not KB.arch_supported("10.3", "11.8", "3.7+PTX 5.0 6.0 6.1 7.0 7.5 8.0 8.6 9.0")
    assert KB.arch_supported("10.3", "12.9", "5.0 6.0 7.0 7.5 8.0 8.6 9.0 10.0 12.0+PTX")


def test_host_issues_are_computed_at_load_for_every_stack() -> None:
    hits = KB.host_issues("conda-forge", "12.9", "2.10.0", "0.0.34", ("9.0",))
    assert [i for i, _ in hits] == ["F6"]
    assert [
        i for i, _ in KB.host_issues("conda-forge", "12.9", "2.8.0", "0.0.32.post2", ("12.0",))
    ] == ["F8"]
    assert KB.host_issues("conda-forge", "12.9", "2.8.0", "0.0.32.post2", ("9.0",)) == []


def test_xformers_0_0_22_post7_lists_all_its_builds() -> None:
    row = KB.profiles["pytorch"].xformers_row("0.0.22.post7")
    assert row is not None
    assert {(b.pytorch, b.cuda) for b in row.extra_builds} == {
        ("2.0.1", ("11.8",)),
        ("1.13.1", ("11.7",)),
    }
    assert row.built_for("2.0.1") and row.built_for("2.1.0") and not row.built_for("2.2.0")


def test_compat_says_the_driver_rule_is_a_policy_and_why_cu12_1_0_serves_12_4() -> None:
    text = (Path(knowledge.default_dir()) / "compat.yaml").read_text()
    head = text[: text.index("cuda_drivers:")]
    assert "Policy (ours, not an NVIDIA rule)" in head and "UNCONFIRMED" in head
    builds = text[text.index("xformers_cuda_builds:") : text.index("{cuda: '12.4', build: 12.1.0")]
    assert "pytorch-cuda >=12.0,<13.0" in builds and "12.4 satisfies" in builds


def _mutate_release(text: str, release: str, old: str, new: str) -> str:
    at = text.index(f"  - version: {release}\n")
    i = text.index(old, at)
    return text[:i] + new + text[i + len(old) :]


BROKEN_17: list[tuple[str, str, Callable[[str], str], str]] = [
    (
        "companion-python-excluded-by-a-pin",
        "unsloth.yaml",
        lambda t: _mutate(
            t, "companion_python: ['3.11', '3.12', '3.13']", "companion_python: ['3.10', '3.11']"
        ),
        "companion_python lists 3.10, but trl 1.15.0 requires Python >=3.11 (contradictory row)",
    ),
    (
        "requires-python-row-missing",
        "unsloth.yaml",
        lambda t: _mutate(
            t, "      - {name: trl, version: 1.15.0,", "      - {name: trl_, version: 1.15.0,"
        ),
        "requires_python has no row for trl==1.15.0",
    ),
    (
        "requires-python-row-of-another-version",
        "unsloth.yaml",
        lambda t: _mutate(t, "{name: trl, version: 1.15.0,", "{name: trl, version: 1.14.2,"),
        "requires_python row for trl is version 1.14.2, but the pin is 1.15.0",
    ),
    (
        "bnb-loader-unknown",
        "compat.yaml",
        lambda t: _mutate(t, "loader: same-major", "loader: nearest"),
        "loader 'nearest' must be one of",
    ),
    (
        "gpu-arch-name-split-by-a-comma",
        "compat.yaml",
        lambda t: _mutate(t, "name: 'Hopper (H100, H200)'", "name: Hopper (H100, H200)"),
        "unknown key(s) H200)",
    ),
    (
        "evidence-status-unknown",
        "evidence.yaml",
        lambda t: _mutate(t, "status: unconfirmed", "status: maybe"),
        "status 'maybe' must be one of confirmed, unconfirmed, absent",
    ),
    (
        "evidence-confirmed-without-url",
        "evidence.yaml",
        lambda t: re.sub(r"\n    url: '[^']*'\n(    status: confirmed)", r"\n\1", t, count=1),
        "a confirmed record names its exact build and url",
    ),
]


@pytest.mark.parametrize(
    ("file", "mutate", "message"), [b[1:] for b in BROKEN_17], ids=[b[0] for b in BROKEN_17]
)
def test_broken_issue_17_rows_are_refused(
    kb_copy: Path, file: str, mutate: Callable[[str], str], message: str
) -> None:
    refused = _load_mutated(kb_copy, file, mutate)
    assert file in refused
    assert message in refused


# ----------------------------------------------------------------------------- answers without
# packaging (issue 19): each is checked against packaging itself


def test_release_order_is_packaging_s_order() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conda_unsloth.knowledge.packages import at_least as _at_least
    from conda_unsloth.knowledge.packages import release_key

    release = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(
        lambda xs: ".".join(map(str, xs))
    )

    @settings(max_examples=2000, deadline=None, derandomize=True)
    @given(release, release)
    def check(a: str, b: str) -> None:
        assert release_key(a) is not None
        assert _at_least(a, b) == (Version(a) >= Version(b)), (a, b)

    check()
    assert release_key("2024.1.0") == release_key("2024.1")
    for not_plain in ("2.5.1+cu121", "0.0.28.post3", "2.6.0rc1", " 1.0", "1..0", ""):
        assert release_key(not_plain) is None
    # anything else is asked of packaging, as before
    assert _at_least("2024.1.0rc1", "2024.1") is False
    assert _at_least("2024.1.post1", "2024.1") is True
    assert _at_least("not a version", "2024.1") is False


def test_the_specifier_table_answers_what_packaging_answers() -> None:
    """The table a solve's checks read (the companions' pins included) says for every final
    version what ``SpecifierSet.contains(prereleases=True)`` says."""
    from conda_unsloth.knowledge.rules import _contains

    kb = knowledge.load()
    companions = {v for rel in kb.releases for v in rel.companions.values()}
    assert companions <= {v for _, v in kb.specifier_table}
    asked = 0
    for (spec, version), answer in kb.specifier_table.items():
        if re.fullmatch(r"[0-9]+(\.[0-9]+)*(\.post[0-9]+)?", version):
            assert answer == SpecifierSet(spec).contains(Version(version), prereleases=True)
            assert _contains(spec, version, kb) == answer
            asked += 1
    assert asked > 100


def test_an_xformers_build_for_exactly_this_torch_asks_no_specifier() -> None:
    from conda_unsloth.knowledge.packages import built_for_this_torch

    assert built_for_this_torch("==2.5.1", "2.5.1")
    assert built_for_this_torch("==2.5.1", "2.5.1+cu121")
    assert not built_for_this_torch("==2.5.1", "2.5.10")
    assert not built_for_this_torch(">=2.5.1", "2.5.1")  # a range: packaging decides
