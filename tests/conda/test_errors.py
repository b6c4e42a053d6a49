"""Inside conda, the hook turns our errors into conda's: same message and hints (naming `conda
unsloth`), same exit code; an unsatisfiable solve is conda's UnsatisfiableError kind."""

from __future__ import annotations

import pytest

from conda_unsloth.errors import UnsolvableError, UsageError

pytestmark = pytest.mark.conda


def test_usage_error_becomes_a_conda_error_with_our_exit_code() -> None:
    from conda import CondaError

    from conda_unsloth.conda.errors import conda_error
    from conda_unsloth.conda.runtime import runtime

    err = conda_error(UsageError("bad %s value", hints=["conda unsloth env --help"]), runtime())
    assert isinstance(err, CondaError) and err.return_code == 2
    assert str(err) == "bad %s value\nhint: conda unsloth env --help"
    assert err.dump_map()["hints"] == ["conda unsloth env --help"]


def test_unsolvable_is_condas_unsatisfiable_kind() -> None:
    from conda.exceptions import UnsatisfiableError

    from conda_unsloth.conda.errors import conda_error
    from conda_unsloth.conda.runtime import runtime

    err = conda_error(UnsolvableError("nothing provides __cuda", hints=["x"]), runtime())
    assert isinstance(err, UnsatisfiableError) and err.return_code == 1
    assert str(err).startswith("nothing provides __cuda")
