"""``python -m mar_tasks`` is ``mar-archive``."""
import sys

from mar_tasks.cli.archive import main

sys.exit(main())
