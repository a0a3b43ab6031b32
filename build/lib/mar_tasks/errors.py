"""The one exception type for mistakes a user can fix.

Everything raised as :class:`ArchiveError` is shown as a single line (no traceback) by the
CLI and by the doit tasks, so its message must name both the problem and the fix.
"""


class ArchiveError(Exception):
    """A user error: bad option, missing input, existing output, bad handler..."""


class OutputExistsError(ArchiveError):
    """The output exists and we may not replace it (no -f/--force)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} already exists; pass -f/--force to overwrite it "
            "(in doit: `doit archive --force` or force = true for this model)"
        )
        self.path = path


def from_os_error(exc: OSError, hint: str = "check the path and its permissions") -> ArchiveError:
    """One line for an OS error no finer check caught (permissions on a parent, I/O errors)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return ArchiveError(f"{where}{exc.strerror or exc}; {hint}")
