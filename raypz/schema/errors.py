"""The errors that stop a job on an input, output or setting it refuses (one line, no
traceback: :mod:`raypz.job_errors`)."""

from __future__ import annotations


class ContractError(ValueError):
    """An input breaks the object-table contract; says which file, column and rule.

    Attributes:
        file: the file at fault (as listed inside its filesystem), or the input path.
        column: the column at fault, or None for a file-level rule (unreadable, no files).
        rule: what is wrong, in words.
    """

    def __init__(self, file: str, column: str | None, rule: str) -> None:
        self.file = file
        self.column = column
        self.rule = rule
        where = f"column {column!r}: " if column is not None else ""
        super().__init__(f"{file}: {where}{rule}")

    def __reduce__(self):  # keep the attributes when Ray ships the error between processes
        return (type(self), (self.file, self.column, self.rule))


class RefusedError(ValueError):
    """An input, output or setting a job refuses for a reason its message gives (an output
    inside its input, an unfinished catalog, a model name that is a path...), other than a
    breach of the object-table contract (:class:`ContractError`). A ValueError, as before."""
