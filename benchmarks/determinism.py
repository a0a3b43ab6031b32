"""Does deflate give the same bytes in every process? Run many fresh processes and count.

ISA-L started without history (a plain ``compressobj`` per chunk) encodes a few chunks in a
thousand processes differently: valid deflate, other bytes, depending on the process's
address layout (it never varies within a process, and never with ASLR off). mar_tasks primes
every ISA-L call with history (see ``mar_tasks/deflate.py``). This script measures both ways
on the same chunks in the same processes and prints how many processes disagreed with the
majority. A test cannot do this: it takes thousands of processes to see one.

    python benchmarks/determinism.py [--processes N]   # default 4000: about 8 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
CHUNKS = 14


def make_input(path: Path) -> None:
    """Weights-like data of 4-bit symbols (the kill tests' model, where the issue showed)."""
    rng = random.Random(7)
    rng.randbytes(10_000_000)
    path.write_bytes(bytes(rng.getrandbits(4) for _ in range(200_000)) * 80)


def child(path: Path) -> None:
    from isal import isal_zlib

    from mar_tasks.formats.deflate import CHUNK, deflate_chunk
    data = path.read_bytes()
    chunks = [data[i * CHUNK:(i + 1) * CHUNK] for i in range(1, CHUNKS + 1)]
    cold, primed = [], []
    for i, chunk in enumerate(chunks):
        co = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
        cold.append(co.compress(chunk) + co.flush(isal_zlib.Z_SYNC_FLUSH))
        primed.append(deflate_chunk(chunk, False, data[i * CHUNK:(i + 1) * CHUNK]))
        primed.append(deflate_chunk(chunk, False))  # a stream's start: the stored head
    digest = lambda parts: hashlib.sha256(b"".join(parts)).hexdigest()[:16]  # noqa: E731
    print(digest(cold), digest(primed))


def run_batch(path: Path, n: int) -> List[List[str]]:
    out = []
    for _ in range(n):
        r = subprocess.run([sys.executable, __file__, "--child", str(path)],
                           capture_output=True, text=True, check=True)
        out.append(r.stdout.split())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4000)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(Path(args.child))
        return
    WORK.mkdir(exist_ok=True)
    path = WORK / "determinism.bin"
    if not path.exists():
        make_input(path)
    workers = os.cpu_count() or 1
    share = [args.processes // workers + (i < args.processes % workers) for i in range(workers)]
    with ThreadPoolExecutor(workers) as ex:
        rows = [row for batch in ex.map(lambda n: run_batch(path, n), share) for row in batch]
    print(f"# deflate determinism: {len(rows)} fresh processes, {CHUNKS} chunks of 1 MiB each")
    for col, name in ((0, "ISA-L started cold (plain compressobj per chunk)"),
                      (1, "mar_tasks deflate_chunk (primed with history / stored head)")):
        counts = collections.Counter(row[col] for row in rows)
        odd = len(rows) - counts.most_common(1)[0][1]
        print(f"| {name} | {odd} of {len(rows)} processes gave other bytes |")


if __name__ == "__main__":
    main()
