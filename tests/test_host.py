"""Host detection: nvidia-smi parsing (with a stand-in nvidia-smi: no GPU here), overrides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import host
from tests.conftest import Result, tree


def test_no_driver_means_no_cuda() -> None:
    h = host.detect()
    assert h.driver_cuda is None and h.gpus == () and h.source == "none"
    assert h.platform == host.conda_platform()


def test_nvidia_smi_is_parsed_fake_gpu(fake_gpu: Callable[..., Path]) -> None:
    fake_gpu(
        driver="580.159.04",
        cuda="13.0",
        gpus=(("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA L4", "8.9")),
    )
    h = host.detect()
    assert h.source == "nvidia-smi"
    assert h.driver_version == "580.159.04" and h.driver_cuda == "13.0"
    assert [(g.index, g.name, g.arch) for g in h.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "9.0"),
        (1, "NVIDIA L4", "8.9"),
    ]
    assert h.archs == ("9.0", "8.9")


def test_broken_nvidia_smi_is_ignored_fake_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2\nexit 9\n"
    )
    exe.chmod(0o755)
    monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", str(exe))
    assert host.detect().driver_cuda is None


def test_conda_override_cuda(
    monkeypatch: pytest.MonkeyPatch, fake_gpu: Callable[..., Path]
) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "12.4")
    h = host.detect()
    assert h.driver_cuda == "12.4" and h.source == "CONDA_OVERRIDE_CUDA"
    fake_gpu(cuda="12.9")
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "")
    assert host.detect().driver_cuda is None, "an empty override means no CUDA driver, as in conda"


def test_glibc_is_read() -> None:
    g = host.glibc_version()
    assert g is None or g.count(".") >= 1


def test_bad_conda_override_cuda_is_a_usage_error(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "twelve")
    r = cli("env", "-o", str(tmp_path / "e.yml"))
    assert r.code == 2 and "CONDA_OVERRIDE_CUDA='twelve' is not a CUDA version" in r.err
    assert not (tmp_path / "e.yml").exists()


def test_conda_override_glibc_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "2.17")
    h = host.detect()
    assert h.glibc == "2.17"
    assert "CONDA_OVERRIDE_GLIBC=2.17 overrides this host's glibc" in h.notes
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "")
    assert host.detect().glibc is None, "an empty override: this host's glibc is not used"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "CONDA_OVERRIDE_CUDA",
            "foo",
            "CONDA_OVERRIDE_CUDA='foo' is not a CUDA version like 12.4",
        ),
        ("CONDA_OVERRIDE_CUDA", "12.x", "CONDA_OVERRIDE_CUDA='12.x' is not a CUDA version"),
        ("CONDA_OVERRIDE_GLIBC", "new", "CONDA_OVERRIDE_GLIBC='new' is not a glibc version"),
        ("CONDA_OVERRIDE_GLIBC", "2", "CONDA_OVERRIDE_GLIBC='2' is not a glibc version"),
    ],
    ids=["cuda-word", "cuda-x", "glibc-word", "glibc-major-only"],
)
def test_malformed_override_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    from conda_unsloth.errors import UsageError

    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError) as info:
        host.detect()
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(
    ("var", "value"),
    [("CONDA_OVERRIDE_CUDA", "foo"), ("CONDA_OVERRIDE_GLIBC", "2.x")],
    ids=["cuda", "glibc"],
)
def test_doctor_with_malformed_override_one_line_exit_2(
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    var: str,
    value: str,
) -> None:
    from tests.exportenv import make_env

    prefix = make_env(tmp_path)
    before = tree(tmp_path)
    monkeypatch.setenv(var, value)
    r = cli("doctor", "-p", str(prefix))
    assert r.code == 2, (r.out, r.err)
    first, *rest = r.err.splitlines()
    assert first == f"conda-unsloth: error: {var}='{value}' is not a " + (
        "CUDA version like 12.4" if var.endswith("CUDA") else "glibc version like 2.28"
    )
    assert all(ln.startswith("hint: ") for ln in rest)
    assert "Traceback" not in r.err
    assert tree(tmp_path) == before


def test_nvidia_smi_is_looked_up_on_path_fake_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CONDA_UNSLOTH_NVIDIA_SMI, the first executable nvidia-smi on PATH is run (a
    directory or a non-executable file of that name is skipped), and a failing one is refused."""
    dirs = [tmp_path / n for n in ("a_dir", "b_noexec", "c_exec")]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "nvidia-smi").mkdir()  # a directory named like the command
    (dirs[1] / "nvidia-smi").write_text("#!/bin/sh\nexit 1\n")  # not executable
    (dirs[2] / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n"
    )  # found, run, and refused like any failing nvidia-smi
    (dirs[2] / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", ":".join(str(d) for d in dirs))
    monkeypatch.delenv("CONDA_UNSLOTH_NVIDIA_SMI")  # as on a user's machine: looked up on PATH
    monkeypatch.setenv("CONDA_UNSLOTH_NVML", "0")
    assert host.detect().source == "none"
    (dirs[2] / "nvidia-smi").write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=*) echo "0, NVIDIA H100, 550.54.14, 9.0";;\n'
        '*) echo "| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: 12.4 |";;\n'
        "esac\n"
    )
    found = host.detect()
    assert (found.source, found.driver_cuda, found.archs) == ("nvidia-smi", "12.4", ("9.0",))


def test_no_driver_node_means_nvml_is_not_even_loaded() -> None:
    """Without /dev/nvidiactl (or WSL's /dev/dxg) NVML cannot start: detection skips loading
    ctypes and libnvidia-ml instead of failing slowly."""
    import os
    import subprocess
    import sys

    if any(os.path.exists(n) for n in host.DRIVER_NODES):
        pytest.skip("this host has an NVIDIA driver node")
    code = (
        "import sys; from conda_unsloth import host; print(host._nvml(), 'ctypes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "False"]
