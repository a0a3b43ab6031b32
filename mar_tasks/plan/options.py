"""What one archive is made of: the options record shared by the CLI and the doit tasks.

Validation of the plain values (name, runtime, format, compression) lives here; file
checks live in :mod:`mar_tasks.plan.selection` and handler checks in :mod:`mar_tasks.plan.handler_check`.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Optional, Tuple, Union

from mar_tasks.plan.choices import COMPRESSIONS, FORMATS, RUNTIMES, SUFFIXES  # noqa: F401 (re-exported)
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.build_time import epoch_record


# The spec: "must begin with a letter ... letters, digits, underscores, dashes and periods".
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-.]*$")
# What both reference archivers actually accept (a leading digit too).
LENIENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")


def parse_extra_files(value: Union[str, Iterable[Any]]) -> Tuple[Path, ...]:
    """``--extra-files``' value: a comma-separated string (as typed) or a list of paths."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(Path(str(x).strip()) for x in items if str(x).strip())


_PATH_FIELDS = ("model_path", "export_path", "serialized_file", "model_file",
                "requirements_file", "config_file", "base_dir")


@dataclass(frozen=True)
class ArchiveOptions:
    """Everything that decides an archive's bytes, plus `force`.

    Paths are kept as given; :meth:`resolved` makes them absolute against a base folder
    (the current directory for the CLI, the pyproject/dodo folder for doit).
    """

    model_name: str
    handler: str
    model_path: Optional[Path] = None
    export_path: Path = Path(".")
    archive_format: str = "default"
    runtime: str = "python"
    serialized_file: Optional[Path] = None
    model_file: Optional[Path] = None
    extra_files: Tuple[Path, ...] = field(default_factory=tuple)
    version: Optional[str] = None
    requirements_file: Optional[Path] = None
    config_file: Optional[Path] = None
    compression: str = "auto"
    force: bool = False
    # Folder that relative paths (and path-like handlers) were given against; not an
    # archive option, so it is left out of :meth:`record`.
    base_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        # Python callers may pass str paths and extra_files as "a,b" (torch-model-archiver's
        # ModelArchiverConfig spelling); keep one representation.
        for key in _PATH_FIELDS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))
        if not isinstance(self.extra_files, tuple) or not all(isinstance(p, Path) for p in self.extra_files):
            object.__setattr__(self, "extra_files", parse_extra_files(self.extra_files or ()))

    def resolved(self, base: Path) -> "ArchiveOptions":
        """Return a copy with every path made absolute against `base`."""

        base_s = str(base)

        def fix(p: Optional[Path]) -> Optional[Path]:
            return None if p is None else Path(os.path.abspath(os.path.join(base_s, p)))

        return replace(
            self,
            model_path=fix(self.model_path),
            export_path=fix(self.export_path) or base,
            serialized_file=fix(self.serialized_file),
            model_file=fix(self.model_file),
            extra_files=tuple(fix(p) for p in self.extra_files),  # type: ignore[misc]
            requirements_file=fix(self.requirements_file),
            config_file=fix(self.config_file),
            base_dir=Path(os.path.abspath(base_s)),
        )

    @cached_property
    def output_path(self) -> Path:
        """Where the archive (or the no-archive folder) ends up (computed once per record:
        doit loads thousands)."""
        return Path(os.path.join(self.export_path, self.model_name + SUFFIXES[self.archive_format]))

    def record(self) -> dict:
        """A JSON-encodable record of every option that changes the output bytes.

        Paths under `base_dir` are recorded relative to it, so moving a checkout (or a CI
        cache restore into another folder) changes nothing.
        """
        base = str(self.base_dir) + os.sep if self.base_dir is not None else None

        def show(value: Any) -> Any:
            if isinstance(value, Path):
                text = str(value)
                return text[len(base):] if base and text.startswith(base) else text
            return value

        rec: dict = {}
        for f in fields(self):  # (not asdict: it deep-copies every value)
            if f.name in ("force", "base_dir"):
                continue
            value = getattr(self, f.name)
            rec[f.name] = [show(v) for v in value] if isinstance(value, tuple) else show(value)
        rec["SOURCE_DATE_EPOCH"] = epoch_record()  # normalised: only the epoch used counts
        return rec


def validate_values(opts: ArchiveOptions) -> None:
    """Check name, runtime, format, compression and handler spelling; raise ArchiveError."""
    name = opts.model_name
    if not name:
        raise ArchiveError("model name is empty; pass --model-name NAME (letters, digits, _ - .)")
    if not NAME_RE.fullmatch(name):
        if LENIENT_NAME_RE.fullmatch(name):
            warnings.warn(
                f"model name {name!r} starts with a digit; the spec wants a letter first "
                "(accepted, as torch-model-archiver does)",
                stacklevel=2,
            )
        else:
            raise ArchiveError(
                f"invalid model name {name!r}: it must begin with a letter and contain only "
                "letters, digits, underscores, dashes and periods; rename it"
            )
    if opts.runtime not in RUNTIMES:
        raise ArchiveError(
            f"unknown runtime {opts.runtime!r}; choose one of {', '.join(RUNTIMES)}"
        )
    if opts.archive_format not in FORMATS:
        raise ArchiveError(
            f"unknown archive format {opts.archive_format!r}; choose one of {', '.join(FORMATS)}"
        )
    if opts.compression not in COMPRESSIONS:
        raise ArchiveError(
            f"unknown compression {opts.compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    if not opts.handler or not opts.handler.split(":", 1)[0]:
        raise ArchiveError("handler is empty; pass --handler MODULE[:FUNCTION]")
    if opts.version is not None and not str(opts.version).strip():
        raise ArchiveError("model version is empty; pass -v/--version like 1.0, or leave it out")
