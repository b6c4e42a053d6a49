"""Every file conda-unsloth writes, built by the stock tools (issue 21 item 1, issue 14 item 6):
each envs/ file, each form of ``conda unsloth env -o`` and each export (environment, explicit
with sha256, conda-lock), created offline from the stand-in mirror with the real micromamba
2.8.1 and (in the micromamba lane, which runs under setup-conda.sh's Python) the real conda
26.7.1, gives the env ``conda-unsloth create`` builds with py-rattler: the same conda records
(name, version, build, url), the same pip distributions, conda's torch/xformers/triton never
replaced by pip, and nothing from a channel the file does not list (``trap`` is a .condarc
channel with higher versions the files' specs admit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conda.realconda import pip_dists
from tests.micromamba import standins
from tests.micromamba.conftest import (
    ENVS,
    Reference,
    Run,
    Tools,
    copy,
    records,
    same_env,
)

PAIRS = standins.pairs()
IDS = [f"{p}-{c}" for p, c in PAIRS]
TRAP_RC = "channels:\n  - {trap}\n"


def trap(tools: Tools, mirror: standins.Mirror) -> None:
    tools.condarc(TRAP_RC.format(trap=mirror.url(standins.TRAP)))


# ----------------------------------------------------------------------------- envs/*.yml


@pytest.mark.parametrize(("profile", "cuda"), PAIRS, ids=IDS)
def test_envs_file_with_micromamba(
    profile: str,
    cuda: str,
    tools: Tools,
    mirror: standins.Mirror,
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """The header's micromamba command, a .condarc channel present: `micromamba create -f FILE
    --strict-channel-priority --override-channels`."""
    ref = reference(profile, cuda)
    env_file = copy(ENVS / f"{profile}-cuda{cuda}.yml", tmp_path / "f")
    assert "micromamba create -f THIS_FILE --strict-channel-priority --override-channels" in (
        env_file.read_text()
    )
    trap(tools, mirror)
    prefix = tmp_path / "mm"
    r = tools.mm(
        "create", "-y", "-p", str(prefix), "-f", str(env_file), "--strict-channel-priority",
        "--override-channels", "--channel-alias", mirror.alias, "--offline",
        extra={"CONDA_OVERRIDE_CUDA": cuda},
        wheels=mirror.wheels[standins.selection(profile, cuda).unsloth.version],
    )  # fmt: skip
    assert r.code == 0, r
    same_env(prefix, ref)


@pytest.mark.parametrize(("profile", "cuda"), PAIRS, ids=IDS)
@pytest.mark.parametrize("form", ["env create -f", "create --file --override-channels"])
def test_envs_file_with_conda(
    profile: str,
    cuda: str,
    form: str,
    tools: Tools,
    mirror: standins.Mirror,
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """The header's two conda commands, with a .condarc channel: `conda env create -f` (which
    also reads it, after the file's channels: strict priority keeps it out) and `conda create
    --file --override-channels -c ...` (which never reads it)."""
    ref = reference(profile, cuda)
    env_file = copy(ENVS / f"{profile}-cuda{cuda}.yml", tmp_path / "f")
    trap(tools, mirror)
    prefix = tmp_path / "conda"
    channels = [
        c for c in YAML(typ="safe").load(env_file.read_text())["channels"] if c != "nodefaults"
    ]
    if form == "env create -f":
        argv = ["env", "create", "-p", str(prefix), "-f", str(env_file)]
    else:
        argv = ["create", "-y", "-p", str(prefix), "--file", str(env_file), "--override-channels"]
        argv += [a for c in channels for a in ("-c", c)]
        header = f"--override-channels {' '.join(f'-c {c}' for c in channels)}"
        assert header in env_file.read_text()
    r = tools.conda(
        *argv,
        extra={
            "CONDA_CHANNEL_ALIAS": mirror.alias,
            "CONDA_CHANNEL_PRIORITY": "strict",
            "CONDA_OVERRIDE_CUDA": cuda,
            "CONDA_OFFLINE": "false",
        },
        wheels=mirror.wheels[standins.selection(profile, cuda).unsloth.version],
    )
    assert r.code == 0, r
    same_env(prefix, ref)


# ----------------------------------------------------------------------------- env -o, --for


@pytest.mark.parametrize("tool", [None, "conda", "micromamba"], ids=["default", "conda", "mm"])
def test_env_output_for_each_tool(
    tool: str | None,
    tools: Tools,
    mirror: standins.Mirror,
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """`conda-unsloth env -o F [--for TOOL]`, built with the command the file's header names
    for that tool, a .condarc channel present."""
    ref = reference("pytorch", "12.1")
    out = tmp_path / "f" / "env.yml"
    out.parent.mkdir()
    r = tools.unsloth("env", "--cuda", "12.1", "-o", str(out), *(["--for", tool] if tool else []))
    assert r.code == 0, r
    assert sorted(p.name for p in out.parent.iterdir()) == ["env.yml"]  # one file
    text = out.read_text()
    assert ("- nodefaults" in text) is (tool == "micromamba")
    trap(tools, mirror)
    wheels = mirror.wheels["2024.12.12"]
    prefix = tmp_path / "env"
    if tool == "conda":
        line = next(ln for ln in text.splitlines() if "--override-channels -c" in ln)
        assert line.startswith("#   CONDA_CHANNEL_PRIORITY=strict conda create -n NAME --file")
        r = tools.conda(
            "create", "-y", "-p", str(prefix), "--file", str(out), "--override-channels",
            "-c", "pytorch", "-c", "nvidia", "-c", "xformers", "-c", "conda-forge",
            extra={"CONDA_CHANNEL_ALIAS": mirror.alias, "CONDA_CHANNEL_PRIORITY": "strict",
                   "CONDA_OVERRIDE_CUDA": "12.1"},
            wheels=wheels,
        )  # fmt: skip
    else:
        flags = ["--strict-channel-priority"]
        if tool is None:
            flags.append("--override-channels")
        # --for micromamba: nodefaults alone keeps the .condarc channel out
        assert f"micromamba create -n NAME -f THIS_FILE {' '.join(flags)}" in text
        r = tools.mm(
            "create", "-y", "-p", str(prefix), "-f", str(out), *flags,
            "--channel-alias", mirror.alias, "--offline",
            extra={"CONDA_OVERRIDE_CUDA": "12.1"}, wheels=wheels,
        )  # fmt: skip
    assert r.code == 0, r
    same_env(prefix, ref)


def test_without_nodefaults_or_override_micromamba_reads_the_condarc_channel(
    tools: Tools, mirror: standins.Mirror, tmp_path: Path
) -> None:
    """Why the header says --override-channels: micromamba adds .condarc channels to a file
    without `nodefaults` (here a channel that does not exist: the create fails)."""
    env_file = copy(ENVS / "pytorch-cuda12.1.yml", tmp_path / "f")
    tools.condarc(TRAP_RC.format(trap=(tmp_path / "no-such-channel").as_uri()))
    r = tools.mm(
        "create", "-y", "-p", str(tmp_path / "mm"), "-f", str(env_file),
        "--strict-channel-priority", "--channel-alias", mirror.alias, "--dry-run",
        extra={"CONDA_OVERRIDE_CUDA": "12.1"},
    )  # fmt: skip
    assert r.code != 0 and "no-such-channel" in r.out + r.err, r


# ----------------------------------------------------------------------------- exports


@pytest.fixture
def exported(
    tools: Tools, reference: Callable[[str, str], Reference], tmp_path: Path
) -> Callable[[str, str], Path]:
    """``exported(format, filename)``: `conda-unsloth export` of the pytorch 12.1 reference."""
    ref = reference("pytorch", "12.1")

    def export(fmt: str, name: str) -> Path:
        out = tmp_path / "x" / name
        out.parent.mkdir(exist_ok=True)
        r = tools.unsloth("export", "-p", str(ref.prefix), "--format", fmt, "-o", str(out))
        assert r.code == 0, r
        return out

    return export


def test_explicit_export_with_micromamba(
    tools: Tools,
    exported: Callable[[str, str], Path],
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """`micromamba create --file explicit.txt`: exactly the conda part, every sha256 checked
    (the `# pip` lines are comments to it, as to conda); a changed hash is refused."""
    ref = reference("pytorch", "12.1")
    f = exported("explicit", "explicit.txt")
    assert "# $ micromamba create --name <env> --file <this file>" in f.read_text()
    r = tools.mm("create", "-y", "-p", str(tmp_path / "mm"), "--file", str(f))
    assert r.code == 0, r
    assert records(tmp_path / "mm") == ref.records
    assert pip_dists(tmp_path / "mm") == set()
    lines = f.read_text().splitlines()
    i = next(n for n, ln in enumerate(lines) if "/mkl-" in ln)
    lines[i] = lines[i].split("#")[0] + "#" + "0" * 64
    f.write_text("\n".join(lines) + "\n")
    r = tools.mm("create", "-y", "-p", str(tmp_path / "bad"), "--file", str(f))
    assert r.code != 0 and "SHA256" in r.out + r.err, r
    assert not list((tmp_path / "bad").glob("conda-meta/*.json"))


def test_explicit_export_with_conda(
    tools: Tools,
    exported: Callable[[str, str], Path],
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    ref = reference("pytorch", "12.1")
    f = exported("explicit", "explicit.txt")
    r = tools.conda("create", "-y", "-p", str(tmp_path / "c"), "--file", str(f))
    assert r.code == 0, r
    assert records(tmp_path / "c") == ref.records


@pytest.mark.parametrize("name", ["unsloth.conda-lock.yml", "conda-lock.yml"])
def test_conda_lock_export_with_micromamba(
    name: str,
    tools: Tools,
    exported: Callable[[str, str], Path],
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """The default names end in -lock.yml, the only names micromamba reads as a lock: it then
    installs the conda part and the hashed wheels (pip checks each sha256)."""
    ref = reference("pytorch", "12.1")
    f = exported("conda-lock", name)
    r = tools.mm("create", "-y", "-p", str(tmp_path / "mm"), "-f", str(f))
    assert r.code == 0, r
    same_env(tmp_path / "mm", ref)


def test_a_lock_named_otherwise_is_an_empty_env_to_micromamba(
    tools: Tools, exported: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Why the names: micromamba reads `x.lock.yml` as an environment.yml without
    dependencies and creates an empty env, exit 0 (docs/tools.md)."""
    f = exported("conda-lock", "conda-lock.yml")
    other = f.with_name("unsloth.lock.yml")
    other.write_text(f.read_text())
    r = tools.mm("create", "-y", "-p", str(tmp_path / "mm"), "-f", str(other))
    assert r.code == 0, r
    assert records(tmp_path / "mm") == set()


@pytest.mark.parametrize("tool", ["micromamba", "conda"])
def test_environment_export(
    tool: str,
    tools: Tools,
    mirror: standins.Mirror,
    exported: Callable[[str, str], Path],
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    """The fully pinned environment.yml with each tool's command from its header, a .condarc
    channel present."""
    ref = reference("pytorch", "12.1")
    f = exported("environment", "environment.yml")
    text = f.read_text()
    assert "nodefaults" not in text
    trap(tools, mirror)
    prefix = tmp_path / tool
    wheels = mirror.wheels["2024.12.12"]
    if tool == "micromamba":
        r = tools.mm(
            "create", "-y", "-p", str(prefix), "-f", str(f), "--strict-channel-priority",
            "--override-channels", "--offline", wheels=wheels,
        )  # fmt: skip
    else:
        # (no --offline: conda 26.7 cannot read a file:// channel offline with an empty
        # cache, issue 14 item 1; every channel here is local anyway)
        r = tools.conda(
            "env", "create", "-p", str(prefix), "-f", str(f),
            extra={"CONDA_CHANNEL_PRIORITY": "strict"}, wheels=wheels,
        )  # fmt: skip
    assert r.code == 0, r
    same_env(prefix, ref)


# ----------------------------------------------------------------------------- spec forms


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vt 2.5.1, 2.5.1.1, 2.5.1post1 and 2.5.10, one build string for all."""
    from tests.channels import Pkg, write_channel

    root = tmp_path_factory.mktemp("probe")
    pkgs = [
        Pkg("vt", v, "py3.11_cuda12.1_0") for v in ("2.5.1", "2.5.1.1", "2.5.1post1", "2.5.10")
    ]
    return write_channel(root / "probe", pkgs, artifacts=False)


FORMS = {  # spec -> the version micromamba 2.8.1 picks
    "vt 2.5.1 py3.11_cuda12.1_*": "2.5.1",  # what we write
    "vt==2.5.1=py3.11_cuda12.1_*": "2.5.1",
    "vt=2.5.1=py3.11_cuda12.1_*": "2.5.1post1",  # `=2.5.1` is `2.5.1.*` to micromamba
}


def _picked(r: Run) -> str:
    doc = json.loads(r.out)
    return str(doc["actions"]["LINK"][0]["version"])


@pytest.mark.parametrize("spec", list(FORMS))
def test_exact_pin_forms_in_micromamba(spec: str, tools: Tools, probe: Path) -> None:
    r = tools.mm("create", "--dry-run", "--json", "-p", str(tools.box / "p"),
                 "--override-channels", "-c", probe.as_uri(), spec)  # fmt: skip
    assert r.code == 0, r
    assert _picked(r) == FORMS[spec]


@pytest.mark.parametrize("spec", list(FORMS))
def test_exact_pin_forms_in_conda(spec: str, tools: Tools, probe: Path) -> None:
    """conda (and rattler, and conda-lock's vendored conda MatchSpec) read all three as
    ==2.5.1: only the space form means the same to every tool."""
    r = tools.conda("create", "--dry-run", "--json", "-p", str(tools.box / "p"),
                    "--override-channels", "-c", probe.as_uri(), spec)  # fmt: skip
    assert r.code == 0, r
    assert _picked(r) == "2.5.1"


@pytest.mark.parametrize("spec", list(FORMS))
def test_exact_pin_forms_in_rattler(spec: str) -> None:
    import rattler

    assert str(rattler.MatchSpec(spec).version) == "==2.5.1"
