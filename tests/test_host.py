"""Host detection: nvidia-smi parsing (with a stand-in nvidia-smi: no GPU here), overrides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import host
from tests.conftest import Result


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
