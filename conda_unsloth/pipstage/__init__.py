"""The pip stage: Unsloth's pip companions into a freshly built env, with uv (or pip), so that
nothing conda installed is ever replaced.

Three steps, the same guarantees with either installer:

1. **resolve** the companions against the env as conda built it: every Python distribution conda
   installed is a constraint (``torch==2.5.1``), and the installer sees it installed (uv:
   ``uv pip install --dry-run --output-format json``; pip: ``pip install --dry-run --report``).
   A resolution that would install or remove one of conda's distributions (say a ``torch
   2.5.1+cu121`` wheel, which ``torch==2.5.1`` admits) is refused (F12).
2. **install** exactly that closure, ``--no-deps``, with each wheel's sha256 (``--require-hashes``;
   uv finds the wheel and its hash with ``uv pip compile --no-deps --format pylock.toml``, pip's
   report carries them). With a lock: the lock's wheels, the same way.
3. **check**: conda's distributions are exactly as before, no distribution is installed twice,
   and every installed distribution's requirements are met (what ``pip check`` says, read from
   the metadata: :func:`dependency_problems`). What was installed is byte-compiled with the env's
   python (uv's own ``--compile-bytecode`` would recompile every file of site-packages).

The installer: ``--pip-installer auto`` (the default) takes uv >= 0.13 from the env
(``PREFIX/bin/uv``), from ``PATH`` or from the ``uv`` Python package (``pip install
'conda-unsloth[uv]'``), else the env's pip. ``uv``/``pip`` insist on one.

What applies, deterministically (the host's pip.conf, uv.toml and other settings never do):

* ``--pip-find-links DIR`` (wheels there only: no index) and ``--pip-index-url URL``. When
  neither is given, the environment's wheel sources: ``PIP_INDEX_URL`` / ``UV_DEFAULT_INDEX`` /
  ``UV_INDEX_URL`` (the index), ``PIP_EXTRA_INDEX_URL`` / ``UV_EXTRA_INDEX_URL`` / ``UV_INDEX``
  (more indexes), ``PIP_FIND_LINKS`` / ``UV_FIND_LINKS``, ``PIP_NO_INDEX`` / ``UV_NO_INDEX``.
* network settings from the environment: ``PIP_CERT`` (uv: ``SSL_CERT_FILE``),
  ``PIP_CLIENT_CERT`` (uv: ``SSL_CLIENT_CERT``), ``PIP_TRUSTED_HOST`` / ``UV_INSECURE_HOST``,
  ``PIP_PROXY`` (uv: ``HTTP(S)_PROXY``), ``PIP_DEFAULT_TIMEOUT`` / ``PIP_TIMEOUT`` /
  ``UV_HTTP_TIMEOUT``; the usual ``SSL_CERT_FILE``, ``HTTP(S)_PROXY``, ``NO_PROXY`` and
  ``.netrc`` as for any program.
* ``--offline``: no index, no network (uv ``--offline``); only local find-links folders.

Every other ``PIP_*``/``UV_*`` variable is dropped (a create never depends on them; the ones that
would have changed the result are named in a notice), pip runs with ``PIP_CONFIG_FILE=os.devnull``
and uv with ``--no-config``, and ``PYTHONDONTWRITEBYTECODE``/``PYTHONPATH``/``PYTHONHOME`` are
not passed to the env's python. Credentials in URLs are removed from everything printed or
recorded (:mod:`conda_unsloth.redact`).

The modules, one concept each: ``wheelsources`` (where wheels come from), ``installers`` (uv or
pip, and how their children run), ``requirements`` (what reaches an installer), ``stage`` (the
three steps), ``pip_backend`` and ``uv_backend`` (each installer's commands), ``failures`` (an
installer's failure in one line, with hints), ``bytecode`` (compiling what was installed),
``dists`` (installed distributions and the check). Every name below is importable from here.
"""

from __future__ import annotations

from .bytecode import IN_PROCESS_FILES, compile_installed, installed_sources, same_python
from .dists import Dist, dependency_problems, env_markers, norm, read_dists, site_packages
from .failures import install_error, resolve_error, summary
from .installers import (
    INSTALLERS,
    MIN_UV,
    Installer,
    Say,
    child_env,
    choose_installer,
    env_has_pip,
    run,
    uv_candidates,
    uv_version,
)
from .requirements import check_requirements, direct_url, refuse_remote_urls
from .stage import StageResult, run_stage
from .wheelsources import Sources, sources

__all__ = [
    "INSTALLERS",
    "IN_PROCESS_FILES",
    "MIN_UV",
    "Dist",
    "Installer",
    "Say",
    "Sources",
    "StageResult",
    "check_requirements",
    "child_env",
    "choose_installer",
    "compile_installed",
    "dependency_problems",
    "direct_url",
    "env_has_pip",
    "env_markers",
    "install_error",
    "installed_sources",
    "norm",
    "read_dists",
    "refuse_remote_urls",
    "resolve_error",
    "run",
    "run_stage",
    "same_python",
    "site_packages",
    "sources",
    "summary",
    "uv_candidates",
    "uv_version",
]
