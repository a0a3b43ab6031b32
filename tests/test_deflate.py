"""The chunked deflate stream: valid, independent of threads, and never started cold."""
from __future__ import annotations

import random
import zlib

import pytest

from mar_tasks.formats.deflate import CHUNK, HEAD, WINDOW, ParallelDeflate, deflate_all, deflate_chunk


def sample(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    block = bytes(rng.getrandbits(3) for _ in range(5000))
    return (block * (n // len(block) + 1))[:n]


def inflate(stream: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    out = d.decompress(stream)
    assert d.eof and not d.unused_data, "the stream must end with exactly one final block"
    return out


def chunked(data: bytes):
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


@pytest.mark.parametrize("n", [0, 1, HEAD - 1, HEAD, HEAD + 1, 70_000, CHUNK - 1, CHUNK,
                               CHUNK + 1, 2 * CHUNK + HEAD])
def test_stream_round_trips_and_ignores_thread_count(n: int):
    data = sample(n)
    streams = []
    for workers in (1, 2, 3):
        with ParallelDeflate(workers) as deflater:
            streams.append(b"".join(deflater.stream(chunked(data))))
    assert streams[0] == streams[1] == streams[2]
    assert inflate(streams[0]) == data
    if n <= CHUNK:
        assert deflate_all(data) == streams[0]


def test_a_stream_starts_with_its_head_stored_so_isal_never_starts_cold():
    # ISA-L started without history gives process-dependent bytes (see deflate.py).
    data = sample(3 * HEAD)
    piece = deflate_chunk(data, True)
    assert piece[:5] == bytes([0]) + HEAD.to_bytes(2, "little") + (HEAD ^ 0xFFFF).to_bytes(2, "little")
    assert piece[5:5 + HEAD] == data[:HEAD]
    assert inflate(piece) == data


def test_later_chunks_match_into_the_previous_one():
    rng = random.Random(3)
    first = rng.randbytes(CHUNK)          # incompressible on its own
    second = first[-WINDOW // 2:] * 8     # only compressible by looking back into `first`
    with ParallelDeflate(2) as deflater:
        stream = b"".join(deflater.stream([first, second]))
    primed = stream[len(deflate_chunk(first, False)):]
    cold = deflate_chunk(second, True)    # the same chunk starting a stream
    assert len(primed) < len(cold) // 2
    assert inflate(stream) == first + second


def test_a_stream_can_continue_from_given_history():
    data = sample(3 * CHUNK + 7)
    first, rest = data[:CHUNK], data[CHUNK:]
    with ParallelDeflate(2) as deflater:
        whole = b"".join(deflater.stream(chunked(data)))
        continued = deflate_chunk(first, False) + b"".join(deflater.stream(chunked(rest), first))
    assert continued == whole
