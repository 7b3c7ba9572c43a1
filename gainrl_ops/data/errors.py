"""The error for input a user can fix, in a module of its own so that light commands
(`gainrl sql`, `gainrl --help`) can name it without importing the dataset loaders."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset (or one of its rows) that cannot be loaded, located precisely enough to fix."""

    def __init__(self, file: str, reason: str, row: int | None = None, field: str | None = None):
        self.file = file
        self.reason = reason
        self.row = row
        self.field = field
        where = file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None, str | None]]:
        # Keep the structured fields when the error crosses a process boundary (pickle).
        return (type(self), (self.file, self.reason, self.row, self.field))
