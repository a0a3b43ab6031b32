"""Reading the models a project declares in ``pyproject.toml`` under ``[tool.mar_tasks]``.

```toml
[tool.mar_tasks.defaults]            # applies to every model below
export-path = "model-store"

[tool.mar_tasks.models."resnet-18"]  # one table per model; the key is the model name
model-path = "models/resnet"
handler = "image_classifier"

[tool.mar_tasks.model-dirs."zoo"]    # every folder in zoo/ is a model named after it
handler = "service:handle"
exclude = ["wip"]
```

Keys are the CLI's long option names. Paths are relative to the pyproject's folder. Any
mistake is reported as one line naming the file and the key. A mistake in one model's table
(or in what it names) is that model's alone: :func:`load_models` returns it as a
:class:`ModelProblem` and only that model's task fails. A ``model-dirs`` folder that does not
exist yet (another task may create it) holds no models yet, and is listed in ``notes``.
"""
from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mar_tasks.errors import ArchiveError
from mar_tasks.plan.exclusions import is_excluded_dir
from mar_tasks.store.settings import PublishSettings
from mar_tasks.plan.choices import COMPRESSIONS, FORMATS, RUNTIMES

if TYPE_CHECKING:
    from mar_tasks.plan.options import ArchiveOptions

# key -> (ArchiveOptions field, expected type, is a path)
KEYS: Dict[str, tuple] = {
    "model-name": ("model_name", str, False),
    "model-path": ("model_path", str, True),
    "handler": ("handler", str, False),
    "runtime": ("runtime", str, False),
    "export-path": ("export_path", str, True),
    "archive-format": ("archive_format", str, False),
    "serialized-file": ("serialized_file", str, True),
    "model-file": ("model_file", str, True),
    "extra-files": ("extra_files", list, True),
    "version": ("version", str, False),
    "requirements-file": ("requirements_file", str, True),
    "config-file": ("config_file", str, True),
    "compression": ("compression", str, False),
    "force": ("force", bool, False),
}
SECTION_KEYS = {"defaults", "models", "model-dirs", "publish"}
PUBLISH_KEYS: Dict[str, tuple] = {"url": (None, str, False)}
CHOICES = {"runtime": RUNTIMES, "archive-format": FORMATS, "compression": COMPRESSIONS}
_TYPE_NAMES = {str: "a string", bool: "true or false", list: "a list of strings", dict: "a table"}


class ModelProblem(NamedTuple):
    """A model whose table cannot be turned into options; its task fails with `message`."""

    name: str
    message: str


class ModelSpec(NamedTuple):
    """One model as its table declares it (defaults merged), turned into options only when
    needed (:meth:`options`): a no-op ``doit archive`` whose listing is remembered never
    does (see :mod:`mar_tasks.tasks.remembered_listings`). Its tables' shapes are already checked."""

    name: str
    values: Tuple[Tuple[str, Any], ...]
    where: str
    src: str  # the pyproject's path; paths are relative to its folder

    @property
    def key(self) -> str:
        """Everything the options are made of, as one string (the listing cache's key)."""
        return repr((self.values, self.src, os.environ.get("SOURCE_DATE_EPOCH")))

    def options(self) -> ArchiveOptions:
        """The resolved options; ConfigError for a mistake in this model's values."""
        src = Path(self.src)
        return _to_options(dict(self.values), self.name, src, self.where).resolved(src.parent)


Model = Union[ModelSpec, ModelProblem]


class Project:
    """What a pyproject declares: models (or their problems), and notes for the task doc.

    (Records read on every doit run are NamedTuples or plain classes, not dataclasses: a
    dataclass costs about a millisecond to define, which a no-op run would pay each time.)
    """

    def __init__(self, models: List[Model], notes: Optional[List[str]] = None,
                 publish: Optional[PublishSettings] = None) -> None:
        self.models = models
        self.notes: List[str] = notes or []
        self.publish = publish or PublishSettings()
        self.holds_lock = False  # this process holds the project's lock (see project_lock)


def publish_settings(publish: Dict[str, Any], src: Path) -> PublishSettings:
    """[tool.mar_tasks.publish], then MAR_TASKS_PUBLISH_URL (for CI)."""
    url = os.environ.get("MAR_TASKS_PUBLISH_URL") or publish.get("url")
    if url and not re.match(r"s3://[^/\s]+(/|$)", url):
        raise ConfigError(f"{src}: publish url {url!r} is not an s3://BUCKET/PREFIX address; fix it "
                          "in [tool.mar_tasks.publish] or MAR_TASKS_PUBLISH_URL")
    return PublishSettings(url=url)


def warn_retired_cache(section: Dict[str, Any], src: Path) -> None:
    """The shared build cache was retired (a warm hit measured 2-2.5x slower than building:
    benchmarks/RESULTS.md); a project that still configures it is told once, and builds."""
    if "cache" in section:
        print(f"mar_tasks: warning: {src}: [tool.mar_tasks.cache] was removed (the shared build "
              "cache was slower than building); delete the table", file=sys.stderr)
    for var in ("MAR_TASKS_CACHE_URL", "MAR_TASKS_CACHE_MODE"):
        if os.environ.get(var):
            print(f"mar_tasks: warning: {var} is set but the shared build cache was removed; "
                  "unset it", file=sys.stderr)


class ConfigError(ArchiveError):
    """A mistake in ``[tool.mar_tasks]``."""


def find_pyproject(start: Path) -> Optional[Path]:
    """The nearest pyproject.toml in `start` or its parents."""
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _check_table(table: Any, where: str, src: Path, allowed: Dict[str, tuple]) -> Dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: {where} must be a table of options")
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(
                f"{src}: unknown key {where}.{key}; use one of {', '.join(sorted(allowed))}"
            )
        typ = allowed[key][1]
        if key == "extra-files" and isinstance(value, str):
            continue  # a comma-separated string, as on the command line
        if key == "version" and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ConfigError(f"{src}: {where}.version must be a string; write version = \"{value}\"")
        if not isinstance(value, typ) or (typ is list and not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{src}: {where}.{key} must be {_TYPE_NAMES[typ]}, got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{src}: {where}.{key} = {value!r} is not allowed; use one of "
                              f"{', '.join(CHOICES[key])}")
    return table


def _to_options(values: Dict[str, Any], name: str, src: Path, where: str) -> ArchiveOptions:
    from mar_tasks.plan.options import ArchiveOptions, parse_extra_files
    if "handler" not in values:
        raise ConfigError(f"{src}: {where} has no handler; add handler = \"module:function\" "
                          "(or set it in [tool.mar_tasks.defaults])")
    kwargs: Dict[str, Any] = {"model_name": values.get("model-name", name)}
    for key, value in values.items():
        field, _, is_path = KEYS[key]
        if key == "model-name":
            continue
        if key == "extra-files":
            value = parse_extra_files(value)
        elif is_path:
            value = Path(value)
        kwargs[field] = value
    return ArchiveOptions(**kwargs)


def load_models(pyproject: Path) -> Project:
    """Every model the pyproject declares, paths relative to its folder.

    Raises ConfigError for what concerns every model (the file, the section's shape,
    ``defaults``); a single model's mistake becomes a :class:`ModelProblem`, or is found by
    :meth:`ModelSpec.options` (a missing handler, say).
    """
    try:
        doc = tomllib.loads(pyproject.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {pyproject} ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject} is not valid TOML ({exc}); fix it") from None
    tool = doc.get("tool", {})
    section = tool.get("mar_tasks") if isinstance(tool, dict) else None
    if section is None:
        raise ConfigError(f"{pyproject} has no [tool.mar_tasks] section; declare your models "
                          "there (see the mar_tasks README)")
    warn_retired_cache(section, pyproject)
    _check_table({k: v for k, v in section.items() if k != "cache"}, "tool.mar_tasks", pyproject,
                 {k: (None, dict) for k in SECTION_KEYS})
    base = pyproject.parent
    defaults = _check_table(section.get("defaults", {}), "tool.mar_tasks.defaults", pyproject, KEYS)
    project = Project([], publish=publish_settings(
        _check_table(section.get("publish", {}), "tool.mar_tasks.publish", pyproject, PUBLISH_KEYS),
        pyproject))

    src = str(pyproject)

    def add(name: str, where: str, values: Dict[str, Any]) -> None:
        name = values.get("model-name", name)
        project.models.append(ModelSpec(name, tuple({**defaults, **values}.items()), where, src))

    for name, table in section.get("models", {}).items():
        where = f"tool.mar_tasks.models.{name}"
        try:
            add(name, where, _check_table(table, where, pyproject, KEYS))
        except ConfigError as exc:
            project.models.append(ModelProblem(str(name), f"mar_tasks: {exc}"))
    dir_keys = {k: v for k, v in KEYS.items() if k not in ("model-name", "model-path")}
    dir_keys["exclude"] = (None, list, False)
    for folder, table in section.get("model-dirs", {}).items():
        where = f"tool.mar_tasks.model-dirs.{folder}"
        own = dict(_check_table(table, where, pyproject, dir_keys))
        exclude = set(own.pop("exclude", []))
        root = base / folder
        if not root.is_dir():
            project.notes.append(f"no models from {folder}/ yet: the folder does not exist")
            continue
        for sub in sorted((e for e in os.scandir(root) if e.is_dir()), key=lambda e: e.name):
            if sub.name in exclude or is_excluded_dir(sub.name):
                continue
            add(sub.name, where, {**own, "model-path": os.path.join(folder, sub.name)})
    names = Counter(m.name for m in project.models)
    dupes = sorted(n for n, count in names.items() if count > 1)
    if dupes:
        raise ConfigError(f"{pyproject}: model name(s) {', '.join(dupes)} declared twice; rename one")
    return project
