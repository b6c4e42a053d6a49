"""The error tree: one message, hints once, exit codes; a CondaError subclass inside conda."""

from __future__ import annotations

from conda_unsloth.errors import KnowledgeError, SolveError, UnslothError, UsageError


def test_message_hints_and_codes() -> None:
    e = UsageError("--cuda '12.x' is not a CUDA version", hints=["conda unsloth env --help"])
    assert str(e) == "--cuda '12.x' is not a CUDA version\nhint: conda unsloth env --help"
    assert (
        e.return_code == 2
        and KnowledgeError("x").return_code == 2
        and SolveError("x").return_code == 1
    )
    assert e.to_json() == {
        "error": "UsageError",
        "message": e.message,
        "hints": ["conda unsloth env --help"],
        "exit_code": 2,
    }
    assert isinstance(e, UnslothError)


def test_message_with_percent_signs_is_not_formatted() -> None:
    assert str(UnslothError("100% of %(name)s")) == "100% of %(name)s"
