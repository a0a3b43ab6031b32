"""``python -m mar_tasks`` is ``mar-archive``."""
import sys

from .cli import main

sys.exit(main())
