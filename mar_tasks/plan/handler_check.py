"""Where the handler is and whether TorchServe can call it, checked without importing it.

TorchServe 0.12 (``ts/model_loader.py``) splits the handler at the first ``:``, drops a
trailing ``.py``, imports the part after the last ``/`` from the extracted archive (or falls
back to ``ts.torch_handler.<name>``), then calls the named function (default ``handle``) or,
failing that, instantiates the module's only class. We mirror those rules statically by
parsing the source with :mod:`ast`; user code is never imported.
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Set

from mar_tasks.errors import ArchiveError

# torch-model-archiver 0.12's built-in handler names (modules of ts.torch_handler).
BUILTIN_HANDLERS = frozenset({
    "base_handler", "text_classifier", "image_classifier", "object_detector",
    "image_segmenter", "dali_image_classifier", "vllm_handler", "trt_llm_handler",
})
# The LSP runtime's built-in C++ handlers (torch-model-archiver 0.12 packs no file for them).
LSP_BUILTIN_HANDLERS = frozenset({"BaseHandler", "TorchScriptHandler"})
# The LSP runtime's handler is a shared library, named without its suffix.
LIBRARY_SUFFIX = ".dylib" if sys.platform.startswith("darwin") else ".so"


# The handler's source is parsed whole with ast, whose memory grows with the source: bounded.
MAX_HANDLER_BYTES = 128 << 10   # ast takes up to ~950x the source ("a\n" * 65536: ~120 MiB)
# TorchServe's worker puts the model folder on PYTHONPATH, but a module it (or Python) has
# imported already is taken from sys.modules: a handler named json or os is never imported
# from the archive (and one named like a library not yet imported would shadow it for the
# whole worker). The standard library's names and TorchServe's own are refused.
# Beyond the standard library: what TorchServe 0.12's worker imports at startup
# (ts/model_service_worker.py, ts/protocol/otf_message_handler.py, ts/model_loader.py,
# ts/service.py, ts/utils/util.py: torch, yaml), what torch itself requires and imports
# (typing_extensions, sympy, filelock, networkx, jinja2, fsspec and their own), and the
# third-party modules TorchServe's own ts/ package imports anywhere (psutil, numpy, ...):
# an archive file of that name is never loaded, or replaces the library for the worker.
TORCHSERVE_IMPORTS = frozenset({
    "ts", "torch", "yaml", "psutil", "numpy", "PIL", "torchvision", "torchtext", "torchaudio",
    "captum", "transformers", "packaging", "model_archiver", "pynvml", "nvgpu", "requests",
    "huggingface_hub", "typing_extensions", "sympy", "mpmath", "filelock", "networkx",
    "jinja2", "markupsafe", "fsspec", "triton", "nvidia"})
SHADOWED = frozenset(getattr(sys, "stdlib_module_names", ())) | TORCHSERVE_IMPORTS | {
    "os", "sys", "json", "logging", "importlib", "io", "time", "uuid", "socket",
    "signal", "struct", "threading", "typing", "collections", "re", "abc", "enum"}


def check_not_shadowed(module: str) -> None:
    """Refuse a handler module TorchServe would import from elsewhere than the archive."""
    top = module.split(".", 1)[0]
    if top in SHADOWED:
        whose = (f"the {top!r} module TorchServe uses" if top in TORCHSERVE_IMPORTS
                 else f"Python's own {top!r} module")
        raise ArchiveError(
            f"handler module {module!r} is named like {whose}, which "
            f"TorchServe's worker imports instead of the archive's file (or the file shadows "
            f"it); rename the handler (e.g. {top}_handler.py)")


@dataclass(frozen=True)
class HandlerLocation:
    """Result of resolving a handler string against the archive's files."""

    manifest_value: str             # what goes into MANIFEST.json's "handler"
    function: Optional[str]         # the named function, if any
    module_arcname: Optional[str]   # the module's path inside the archive (None: built-in)
    added_file: Optional[Path]      # a path-like handler file to add at the archive root
    # The file was found after an earlier search folder lacked it: the result then also
    # depends on that absence (see mar_tasks.tasks.remembered_listings).
    searched_past: bool = False


def split_handler(handler: str) -> "tuple[str, Optional[str]]":
    """Split ``module[:function]`` at the first colon, as TorchServe does."""
    module, sep, function = handler.partition(":")
    if sep and not function:
        raise ArchiveError(f"handler {handler!r} ends with ':'; write MODULE or MODULE:FUNCTION")
    return module, (function or None)


def is_path_handler(module: str) -> bool:
    """True when the handler names a file (``path/to/handler.py``) rather than a module."""
    return module.endswith(".py") or "/" in module


def served_module(module: str) -> str:
    """The module TorchServe imports for a path-like handler: the base name without ``.py``.

    A stem with a dot (``my.handler.py``) would be imported as package ``my``; writer and
    verifier both refuse it here.
    """
    stem = module.rsplit("/", 1)[-1]
    stem = stem[: -len(".py")] if stem.endswith(".py") else stem
    if "." in stem or not stem:
        raise ArchiveError(
            f"handler file {module!r}: TorchServe imports it as {stem!r}, i.e. package "
            f"{stem.split('.')[0]!r}; rename the file without dots (e.g. "
            f"{stem.replace('.', '_') or 'handler'}.py)"
        )
    check_not_shadowed(stem)
    return stem


def module_candidates(module: str) -> "list[str]":
    """Archive paths a dotted module name can be imported from."""
    # importlib accepts any file stem ("lstm-service" works), so only empty parts are wrong.
    parts = module.split(".")
    if not all(parts):
        raise ArchiveError(
            f"handler module {module!r} is not a Python module name; "
            "use MODULE[:FUNCTION] or path/to/handler.py[:FUNCTION]"
        )
    check_not_shadowed(module)
    stem = "/".join(parts)
    return [stem + ".py", stem + "/__init__.py"]


def _find_file(rel: Path, search_dirs: Iterable[Path]) -> "tuple[Optional[Path], bool]":
    """The first of `search_dirs` / `rel` that is a file, and whether an earlier folder
    lacked it (an absolute `rel` is taken as it is)."""
    for tried, folder in enumerate(search_dirs):
        candidate = rel if rel.is_absolute() else folder / rel
        if candidate.is_file():
            return candidate, tried > 0 and not rel.is_absolute()
    return None, False


def _locate_library(handler: str, module: str, function: Optional[str],
                    search_dirs: Iterable[Path]) -> HandlerLocation:
    """The LSP runtime's handler, as torch-model-archiver 0.12 packs it: ``path/to/libh``
    adds ``path/to/libh.so`` at the archive root and the manifest says ``libh``."""
    if handler in LSP_BUILTIN_HANDLERS:
        return HandlerLocation(handler, function, None, None)
    found, searched_past = _find_file(Path(module + LIBRARY_SUFFIX), search_dirs)
    if found is None:
        raise ArchiveError(
            f"handler library {module + LIBRARY_SUFFIX!r} not found (the LSP runtime's handler "
            f"is a shared library named without {LIBRARY_SUFFIX}); give its path relative to the "
            "current folder (or to the model path), e.g. --handler path/to/libhandler"
        )
    return HandlerLocation(handler.rsplit("/", 1)[-1], function, None, found, searched_past)


def _module_files(stem: str, names: Set[str]) -> "list[str]":
    """Files that Python imports as module `stem` (a path without suffix) before or instead
    of `stem.py`: extension modules (`h.so`, `h.abi3.so`, `h.cpython-311-...so`)."""
    pattern = re.compile(re.escape(stem) + r"(\.cpython-[^/]*|\.abi3)?\.so")
    return sorted(n for n in names if n.startswith(stem + ".") and pattern.fullmatch(n))


def check_import_order(module: str, found: str, names: Set[str]) -> None:
    """Refuse a handler that Python would import from another file than `found`: a package
    `h/__init__.*` or an extension `h.so` beside `h.py` wins over it, and a module `a.py` (or
    `a.so`) beside the folder `a/` holding `a/h.py` is imported instead of the folder."""
    parts = module.split(".")
    stem = "/".join(parts)
    winners = _module_files(stem, names)
    if found == stem + ".py":
        winners += sorted(n for n in names if n.startswith(stem + "/__init__."))
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        winners += ([parent + ".py"] if parent + ".py" in names else []) + _module_files(parent, names)
    if winners:
        raise ArchiveError(
            f"handler {module!r}: Python would import {winners[0]} instead of {found}; remove or "
            "rename one of them")


def locate_handler(handler: str, runtime: str, arcnames: Set[str],
                   search_dirs: Iterable[Path]) -> HandlerLocation:
    """Resolve `handler` to a file in the archive, a file to add, or a built-in name.

    `search_dirs` are tried in order for a path-like handler (the base folder, then the
    model path). Raises ArchiveError naming what was looked for.
    """
    module, function = split_handler(handler)
    if runtime == "LSP":
        # C++ handlers are shared libraries; TorchServe loads them itself.
        return _locate_library(handler, module, function, search_dirs)
    if is_path_handler(module):
        stem = served_module(module)
        check_import_order(stem, stem + ".py", arcnames)
        found, searched_past = _find_file(Path(module if module.endswith(".py") else module + ".py"),
                                          search_dirs)
        if found is not None:
            # The manifest keeps the user's spelling of the base name, as
            # torch-model-archiver does ("path/to/h:fn" -> "h:fn"); TorchServe imports
            # the same module either way.
            return HandlerLocation(handler.rsplit("/", 1)[-1], function, stem + ".py", found,
                                   searched_past)
        raise ArchiveError(
            f"handler file {module!r} not found; give its path relative to the current "
            "folder (or to the model path), e.g. --handler path/to/handler.py"
        )
    for arcname in module_candidates(module):
        if arcname in arcnames:
            check_import_order(module, arcname, arcnames)
            return HandlerLocation(handler, function, arcname, None)
    if module in BUILTIN_HANDLERS and function is None:
        return HandlerLocation(handler, None, None, None)
    raise ArchiveError(
        f"handler module {module!r} not found in the archive's files (looked for "
        f"{' or '.join(module_candidates(module))} in the model path); add it there, or pass "
        "the file as --handler path/to/" + module.split(".")[-1] + ".py"
    )


def _static_truth(test: ast.expr) -> Optional[bool]:
    """The value of an ``if``/``while`` test known without running it (a constant, or
    ``__name__ == "__main__"``, false on import), else None."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _static_truth(test.operand) if isinstance(test.operand, ast.Constant) else None
        return None if inner is None else not inner
    if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.NotEq))
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__"):
        return isinstance(test.ops[0], ast.NotEq)
    return None


def _module_bindings(tree: ast.Module) -> "tuple[Set[str], list[ast.ClassDef], bool, Set[str]]":
    """Names bound at module level, classes defined there, whether `import *` occurs, and
    other names bound to those classes (aliases)."""
    names: Set[str] = set()
    classes: list[ast.ClassDef] = []
    star = False

    deleted: Set[str] = set()
    aliases: list[tuple] = []    # (name, value) of `Handler = MyHandler`: TorchServe counts each

    def targets(node: ast.AST) -> Iterable[str]:
        """The names an assignment target binds (not `d[handle]` or `o.handle`)."""
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                yield from targets(elt)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)

    def visit(body: Iterable[ast.stmt]) -> None:
        nonlocal star
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                names.add(node.name)
                classes.append(node)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    names.update(targets(t))
                    if isinstance(node.value, ast.Name) and isinstance(t, ast.Name):
                        aliases.append((t.id, node.value.id))
            elif isinstance(node, ast.AugAssign) or (isinstance(node, ast.AnnAssign)
                                                     and node.value is not None):
                names.update(targets(node.target))   # a bare `handle: Any` binds nothing
            elif isinstance(node, ast.Delete):
                for t in node.targets:
                    deleted.update(targets(t))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.name == "*":
                        star = True
                    else:
                        names.add(alias.asname or alias.name.split(".")[0])
            # Definitions under if/try/with/for/while at module level still bind names,
            # unless the branch is one that never runs on import (`if False:`).
            attrs = ["body", "orelse", "finalbody", "handlers"]
            if isinstance(node, (ast.If, ast.While)):
                truth = _static_truth(node.test)
                if truth is False:
                    attrs.remove("body")
                elif truth is True and isinstance(node, ast.If):
                    attrs.remove("orelse")
            for attr in attrs:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    child = getattr(node, attr, None)
                    if isinstance(child, list):
                        visit([c for c in child if isinstance(c, ast.AST)])

    visit(tree.body)
    # A name deleted anywhere at module level may be gone when TorchServe looks: not bound.
    names -= deleted
    class_names = {c.name for c in classes}
    alias_names = {t for t, v in aliases if v in class_names and t not in class_names}
    return names, classes, star, alias_names


def check_handler_source(source: bytes, arcname: str, function: Optional[str]) -> Optional[str]:
    """Raise ArchiveError unless TorchServe 0.12 would find an entry point in this module.

    TorchServe calls ``function`` (default ``handle``) when the module has it, and otherwise
    instantiates the module's only class and calls its ``handle``. Returns a note when a
    named function is missing and that class fallback is what TorchServe will use.
    """
    if len(source) > MAX_HANDLER_BYTES:
        raise ArchiveError(f"handler {arcname} is larger than {MAX_HANDLER_BYTES:,} bytes; "
                           "the handler check reads at most that (move code into other modules)")
    if b"\0" in source:
        raise ArchiveError(f"handler {arcname} holds a NUL byte, so it is not Python source; "
                           "fix the file")
    try:
        tree = ast.parse(source, filename=arcname)
    except SyntaxError as exc:
        where = f"at line {exc.lineno}" if exc.lineno else "(no line)"
        raise ArchiveError(f"handler {arcname} has a syntax error {where}: {exc.msg}; fix it") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"handler {arcname} cannot be parsed ({exc}); fix its encoding") from None
    except (RecursionError, MemoryError):
        raise ArchiveError(f"handler {arcname} is nested too deeply to check; simplify it") from None
    names, classes, star, aliases = _module_bindings(tree)
    if (function or "handle") in names or star:
        return None
    unique = {c.name: c for c in classes}
    count = len(unique) + len(aliases)   # `Handler = MyHandler` is a second class to TorchServe
    if count != 1:
        if function is not None:
            raise ArchiveError(
                f"handler function {function!r} is not defined in {arcname}; define it there "
                f"or name another function after the ':'"
            )
        found = ", ".join(sorted(unique) + sorted(aliases)) or "none"
        raise ArchiveError(
            f"handler {arcname} has no module-level handle() and defines {count} classes "
            f"({found}); TorchServe needs handle() or exactly one class - add handle() or "
            f"name the function as MODULE:FUNCTION"
        )
    cls = next(iter(unique.values()))
    has_handle = any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "handle"
        or isinstance(n, ast.Assign) and "handle" in {getattr(t, "id", None) for t in n.targets}
        for n in cls.body
    )
    inherits = any(not (isinstance(b, ast.Name) and b.id == "object") for b in cls.bases)
    if not (has_handle or inherits):
        raise ArchiveError(
            f"class {cls.name} in {arcname} has no handle() method and no base class to "
            "inherit one from; add handle(self, data, context) or derive from BaseHandler"
        )
    if function is not None:
        return (f"handler function {function!r} is not defined in {arcname}; TorchServe 0.12 "
                f"falls back to its only class, {cls.name}, and calls its handle()")
    return None
