"""What a run does with object stores: the cache's URL and mode, the publish URL.

Kept apart from the store code so that reading a pyproject never imports it (or boto3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MODES = ("read-write", "read", "off")


@dataclass(frozen=True)
class StoreSettings:
    """``[tool.mar_tasks.cache]`` / ``[tool.mar_tasks.publish]`` after environment overrides."""

    cache_url: Optional[str] = None
    cache_mode: str = "off"
    publish_url: Optional[str] = None
    fail_on_error: bool = False
    stats_file: Optional[str] = None  # where actions record hits/misses for the run's summary

    @property
    def cache_on(self) -> bool:
        return bool(self.cache_url) and self.cache_mode != "off"


