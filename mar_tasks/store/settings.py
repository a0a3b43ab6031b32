"""What a run does with object stores: the cache's URL and mode, the publish URL.

Kept apart from the store code so that reading a pyproject never imports it (or boto3).
(A NamedTuple, as the other records read on every doit run: a dataclass costs about a
millisecond to define, which a no-op run pays each time.)
"""
from __future__ import annotations

from typing import NamedTuple, Optional

MODES = ("read-write", "read", "off")


class StoreSettings(NamedTuple):
    """``[tool.mar_tasks.cache]`` / ``[tool.mar_tasks.publish]`` after environment overrides."""

    cache_url: Optional[str] = None
    cache_mode: str = "off"
    publish_url: Optional[str] = None
    fail_on_error: bool = False
    stats_file: Optional[str] = None  # where actions record hits/misses for the run's summary

    @property
    def cache_on(self) -> bool:
        return bool(self.cache_url) and self.cache_mode != "off"


