"""Where ``doit publish`` puts archives: ``[tool.mar_tasks.publish]`` after the environment.

Kept apart from the store code so that reading a pyproject never imports it (or boto3).
(A NamedTuple, as the other records read on every doit run: a dataclass costs about a
millisecond to define, which a no-op run pays each time.)
"""
from __future__ import annotations

from typing import NamedTuple, Optional


class PublishSettings(NamedTuple):
    """The publish URL (``s3://BUCKET/PREFIX``), and this run's summary file."""

    url: Optional[str] = None
    stats_file: Optional[str] = None  # where publish actions record outcomes for the summary
