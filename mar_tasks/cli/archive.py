"""``mar-archive``: the spec's command line plus torch-model-archiver's input options."""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from mar_tasks.engine import build_archive
from mar_tasks.cli.closed_pipe import quiet_on_closed_pipe
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.options import COMPRESSIONS, FORMATS, RUNTIMES, ArchiveOptions, parse_extra_files
from mar_tasks.progress import terminal_bar
from mar_tasks.version import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "None":  # type: ignore[override]
        # One line and exit 2, like every other user error (argparse prints usage first).
        self.exit(2, f"mar-archive: error: {message}; see mar-archive -h\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mar-archive",
        description="Model Archiver Tool: package a model folder into a TorchServe archive. "
                    "Output is reproducible (same inputs, same bytes) and written atomically.",
    )
    p.add_argument("--model-name", required=True,
                   help="Exported model name. The file is <model-name>.mar (or .tar.gz) in the "
                        "export path. Must begin with a letter; letters, digits, _ - . only.")
    p.add_argument("--model-path", type=Path,
                   help="Folder with the model's files; everything in it is archived except "
                        "hidden files, __MACOSX, .DS_Store, MANIFEST.json, .pyc, __pycache__, .mar.")
    p.add_argument("--handler", required=True,
                   help="MODULE[:FUNCTION] inside the archive (dotted for sub-folders), "
                        "path/to/handler.py[:FUNCTION] (added at the archive root), or a "
                        "TorchServe built-in handler name such as image_classifier.")
    p.add_argument("--runtime", default="python", choices=RUNTIMES,
                   help="Runtime of the inference code (default: python).")
    p.add_argument("--export-path", type=Path, default=Path("."),
                   help="Folder for the output (default: current folder); created if missing.")
    p.add_argument("--archive-format", default="default", choices=FORMATS,
                   help='"default": <name>.mar (zip); "tgz": <name>.tar.gz with entries under '
                        '<name>/; "no-archive": files and MAR-INF/ copied to '
                        '<export-path>/<name>/; "zip-store": .mar without compression.')
    p.add_argument("-f", "--force", action="store_true",
                   help="Overwrite an existing output with the same name in the export path.")
    p.add_argument("--serialized-file", type=Path,
                   help="Weights file, added at the archive root (manifest serializedFile).")
    p.add_argument("--model-file", type=Path,
                   help="Model definition file, added at the archive root (manifest modelFile).")
    p.add_argument("--extra-files", default="",
                   help="Comma-separated files, folders or wildcards; files go to the archive "
                        "root, folders keep their structure under their own name.")
    p.add_argument("-v", "--version", dest="model_version",
                   help='Model version for the manifest (default "1.0", which TorchServe needs).')
    p.add_argument("-r", "--requirements-file", type=Path,
                   help="requirements.txt installed by TorchServe for this model.")
    p.add_argument("-c", "--config-file", type=Path, help="Model config YAML (e.g. batch size).")
    p.add_argument("--compression", default="auto", choices=COMPRESSIONS,
                   help='"auto" (default): fast deflate, but store files that do not shrink; '
                        '"deflate": always deflate; "store": never compress.')
    p.add_argument("-q", "--quiet", action="store_true", help="No progress bar.")
    p.add_argument("--tool-version", action="version", version=f"mar_tasks {__version__}",
                   help="Show mar_tasks' version and exit.")
    return p


def options_from_args(args: argparse.Namespace, base: Path) -> ArchiveOptions:
    return ArchiveOptions(
        model_name=args.model_name,
        handler=args.handler,
        model_path=args.model_path,
        export_path=args.export_path,
        archive_format=args.archive_format,
        runtime=args.runtime,
        serialized_file=args.serialized_file,
        model_file=args.model_file,
        extra_files=parse_extra_files(args.extra_files),
        version=args.model_version,
        requirements_file=args.requirements_file,
        config_file=args.config_file,
        compression=args.compression,
        force=args.force,
    ).resolved(base)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the temporary file is removed


@quiet_on_closed_pipe
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    warnings.showwarning = lambda msg, *a, **k: print(f"mar-archive: warning: {msg}", file=sys.stderr)
    opts = options_from_args(args, Path.cwd())
    progress = None if args.quiet else (lambda total: terminal_bar(total, opts.model_name))
    try:
        result = build_archive(opts, progress=progress, tune_malloc=True)  # our own process
    except ArchiveError as exc:
        print(f"mar-archive: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mar-archive: interrupted; nothing was written", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"{result.path} ({result.files} files)", file=sys.stderr)
    return 0
