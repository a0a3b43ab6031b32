"""Fast, reproducible raw deflate on all cores.

Input is cut into fixed 1 MiB chunks; each chunk is deflated on its own by ISA-L (python-isal)
and ends with a sync flush, the last with a final block, so the concatenation is one valid
deflate stream (the pigz technique). Each chunk is primed with the 32 KiB before it as a
dictionary, so matches may reach back into the previous chunk, as they would in one stream.

ISA-L must never start a stream without history. Started cold, it encodes a few chunks in a
thousand processes differently (valid deflate, other bytes: matches to the stream's 2nd and
3rd byte are found or missed depending on the process's address layout; it is consistent
within a process and never happens with ASLR off). Primed with a dictionary it has not
happened once (``benchmarks/determinism.py`` measures both). So a stream's first ``HEAD``
bytes go into a stored block and prime the rest. The bytes then depend only on the input,
never on the thread count, timing or memory layout, and archives stay byte-identical.
"""
from __future__ import annotations

import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Iterable, Iterator, Optional, Tuple

from isal import isal_zlib

from mar_tasks.version import deflate_version

CHUNK = 1 << 20
LEVEL = 1           # ISA-L level 1: zlib-6 ratio on model weights at ~1 GB/s per core
STORE_RATIO = 0.99  # "auto" stores a file whose first chunk does not shrink by 1%
WINDOW = 1 << 15    # deflate's window: how far back a chunk's matches may reach
HEAD = 64           # bytes stored at a stream's start to prime ISA-L (see above)

crc32 = isal_zlib.crc32
crc32_combine = isal_zlib.crc32_combine  # CRC-32 of A+B from those of A and B and len(B)
# What decides the deflate bytes: a rebuild carries compressed entries over only from an
# archive written with the same (mar_tasks.tasks.reuse_grant).
IMPLEMENTATION = f"{deflate_version()} level {LEVEL} chunk {CHUNK} head {HEAD}"


def stored_block(data: bytes, last: bool) -> bytes:
    """A stored deflate block; only valid where the stream is at a byte boundary."""
    return struct.pack("<BHH", int(last), len(data), len(data) ^ 0xFFFF) + data


def deflate_parts(data: bytes, last: bool, history: bytes = b"") -> Tuple[bytes, ...]:
    """Deflate one chunk as a self-contained piece of a raw deflate stream, in parts.

    `history` is the input that precedes `data` in the stream (only its last 32 KiB are
    used); empty means `data` starts the stream. The piece ends at a byte boundary, with a
    final block if `last`. The parts are left unjoined: joining copies a MiB per chunk.
    """
    head = b""
    view = memoryview(data)
    if not history:  # a stream's start: store HEAD bytes so ISA-L never starts cold
        if len(data) <= HEAD:
            return (stored_block(data, last),) if last or data else ()
        history = data[:HEAD]
        head, view = stored_block(history, False), view[HEAD:]
    co = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, -15, zdict=history[-WINDOW:])
    body = co.compress(view)
    tail = co.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)
    return (head, body, tail) if head else (body, tail)


def deflate_chunk(data: bytes, last: bool, history: bytes = b"") -> bytes:
    """:func:`deflate_parts`, joined."""
    return b"".join(deflate_parts(data, last, history))


def deflate_all(data: bytes) -> bytes:
    """Raw deflate of a small buffer in one piece (same bytes as a one-chunk stream)."""
    return deflate_chunk(data, True)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a
    container's cpuset), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_workers(builds_at_once: int = 1) -> int:
    """Threads per build: ``MAR_TASKS_THREADS`` if set, else the usable CPUs shared out
    among the builds running at once (``doit -n N`` runs N)."""
    raw = os.environ.get("MAR_TASKS_THREADS", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, usable_cpus() // max(1, builds_at_once))


class Done:
    """A value computed at once, shaped like a Future."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class ParallelDeflate:
    """A thread pool that turns a chunk stream into an ordered raw deflate stream, and
    runs the build's other work that releases the GIL (:meth:`submit`: the stamp's SHA-256
    of 1 MiB pieces, reading and CRC-32 of stored files).

    ISA-L releases the GIL while compressing, so threads use every core. At most
    ``2 * workers + 1`` chunks are in flight, which bounds memory whatever the file size.
    The threads are joined by :meth:`close` (the ``with`` block's end).
    """

    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = workers or default_workers()
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    @property
    def in_flight(self) -> int:
        """How many submitted tasks a caller should let wait at once: enough to keep
        every thread busy, few enough to bound the memory they hold."""
        return 2 * self.workers + 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the pool (here, when there is one thread); an object whose
        ``result()`` is its value."""
        if self._pool is None:
            return Done(fn(*args))
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "ParallelDeflate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, chunks: Iterable[bytes], history: bytes = b"") -> Iterator[bytes]:
        """Yield the deflate stream of the concatenated `chunks`, in order, in pieces.

        `history` is what the stream already holds before `chunks` (empty: a new stream).
        """
        pending: Deque["Future[Tuple[bytes, ...]] | Tuple[bytes, ...]"] = deque()
        limit = self.in_flight
        held: Optional[bytes] = None

        def submit(data: bytes, last: bool) -> None:
            nonlocal history
            if self._pool is None:
                pending.append(deflate_parts(data, last, history))
            else:
                pending.append(self._pool.submit(deflate_parts, data, last, history))
            history = (history + data)[-WINDOW:] if len(data) < WINDOW else data[-WINDOW:]

        def ready(item: "Future[Tuple[bytes, ...]] | Tuple[bytes, ...]") -> Tuple[bytes, ...]:
            return item if isinstance(item, tuple) else item.result()

        for chunk in chunks:
            if held is not None:
                submit(held, False)
                while len(pending) >= limit:
                    yield from ready(pending.popleft())
            held = chunk
        submit(held if held is not None else b"", True)
        while pending:
            yield from ready(pending.popleft())
