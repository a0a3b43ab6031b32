"""`doit archive` builds every model declared in pyproject.toml [tool.mar_tasks].

This is all a project needs: import the task creator. See README for the config table.
"""
from mar_tasks import task_archive  # noqa: F401  (doit finds task_* names)

DOIT_CONFIG = {"default_tasks": ["archive"]}
