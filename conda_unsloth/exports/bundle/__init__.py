"""Air-gapped bundles: one tar file that rebuilds an environment on a machine with no network.

``conda unsloth export -p PREFIX --format bundle -o unsloth.tar`` writes (uncompressed: the
packages are compressed already)::

    conda-unsloth-bundle.json   manifest: every record, every wheel, the sha256 of every file
    explicit.txt                the env's explicit lock (what `export --format explicit` gives)
    pip-constraints.txt         conda's Python distributions pinned (the pip stage's -c file)
    pip-requirements.txt        the pip stage's wheels, name==version --hash=sha256:...
    channel/<subdir>/<fn>       exactly the env's conda package files, indexed (repodata.json
                                by py-rattler's indexer), usable as ``-c file://.../channel``
    wheels/<file>.whl           the pip stage's wheels (usable as --pip-find-links)

Where the files come from (nothing is downloaded): a conda package from a package cache that
keeps package files (conda's pkgs dirs: ``--pkgs-dir DIR``, ``$CONDA_PKGS_DIRS``, ``ROOT/pkgs``
of the conda installations the env directories name, ``~/.conda/pkgs``) or from its own
``file://`` URL (a local channel); conda-unsloth's own cache (rattler's) keeps only extracted
packages, never the files. A wheel from its ``file://`` URL in the marker (the find-links folder
it was installed from) or from ``--pip-find-links DIR``. Every file is checked against its
sha256 (conda: the record's sha256, else md5; pip: the marker's sha256) before it is used; a
file found nowhere is a one-line error naming it and nothing is written.

``conda unsloth create -p PREFIX --from-bundle FILE`` reads the bundle (every member checked
against the manifest's sha256, each package against its record, each wheel against its pin;
anything else refused before anything is written), installs exactly the records from the
bundle's channel and the wheels from its wheelhouse (``--require-hashes``), with no network.
The installed conda-meta records then get back the URL and channel they had in the source env
(the package came from the bundle, byte for byte the same file), and the marker the source's
target, solver and channels, so the result's explicit export is the source's.

The manifest carries no signature: to know a bundle was not swapped as a whole, compare its
sha256 (``export`` prints it) after moving it.

The modules: ``layout`` (schema, names, hashes), ``locate`` (finding and checking the files),
``writer`` (plan and write), ``reader`` (open and check), ``installer`` (install from the
bundle's channel, then relabel). Every name below is importable from here.
"""

from __future__ import annotations

from .installer import bundle_installer, relabel
from .layout import GENERATED_MARK, MANIFEST, MAX_MANIFEST_BYTES, SCHEMA, SUFFIXES, md5, sha256
from .locate import Member, locate_packages, locate_wheels, package_dirs
from .reader import Opened, opened
from .writer import Plan, plan, write

_sha256 = sha256  # its name before the split (tests/hpc/test_bundle.py)

__all__ = [
    "GENERATED_MARK",
    "MANIFEST",
    "MAX_MANIFEST_BYTES",
    "SCHEMA",
    "SUFFIXES",
    "Member",
    "Opened",
    "Plan",
    "bundle_installer",
    "locate_packages",
    "locate_wheels",
    "md5",
    "opened",
    "package_dirs",
    "plan",
    "relabel",
    "sha256",
    "write",
]
