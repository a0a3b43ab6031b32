"""A progress bar on stderr for large archives, and nothing when stderr is not a terminal."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

SHOW_FROM = 100 * 1000 * 1000  # bytes: smaller archives finish before a bar would help


def terminal_bar(total: int, label: str, stream: Optional[TextIO] = None) -> Optional[Callable[[int], None]]:
    """A callback taking bytes done since last call, or None if no bar should be shown."""
    stream = stream or sys.stderr
    if total < SHOW_FROM or not stream.isatty():
        return None
    state = {"done": 0, "last": 0.0}
    start = time.monotonic()

    def update(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        done = state["done"]
        if now - state["last"] < 0.1 and done < total:
            return
        state["last"] = now
        frac = min(done / total, 1.0)
        width = 30
        filled = int(frac * width)
        rate = done / max(now - start, 1e-6) / 1e6
        stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] "
                     f"{frac * 100:5.1f}% {done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate:,.0f} MB/s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return update
