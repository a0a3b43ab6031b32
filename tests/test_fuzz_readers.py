"""Structure-aware fuzzing under issue 19's rule: mutants of valid archives (ours, re-stamped
half the time, and torch-model-archiver-style ones) either get refused with one-line
problems, or every real reader extracts exactly what the verifier listed.

Bounded for CI (``MAR_TASKS_FUZZ`` mutants, default 300, a fixed seed); run longer by hand,
e.g. ``MAR_TASKS_FUZZ=20000 MAR_TASKS_FUZZ_SEED=7 pytest tests/test_fuzz_readers.py``.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import readers
from craft import HANDLER, MANIFEST, python_tgz, python_zip
from fuzz import mutate
from test_differential import our_archives

COUNT = int(os.environ.get("MAR_TASKS_FUZZ", "300"))
SEED = int(os.environ.get("MAR_TASKS_FUZZ_SEED", "19"))


def test_mutants_are_refused_or_read_alike_by_every_reader(tmp_path: Path):
    rnd = random.Random(SEED)
    seeds = [p.read_bytes() for p in our_archives(tmp_path, {
        "w.bin": rnd.randbytes(3000) + bytes(5000), "assets/a.txt": b"a"}).values() if p.is_file()]
    files = {"MAR-INF/MANIFEST.json": MANIFEST, "service.py": HANDLER, "assets/a.txt": b"a"}
    seeds += [python_zip(files), python_tgz(files)]
    ok, refused, verdicts = [], 0, {}
    for n in range(COUNT):
        seed = rnd.choice(seeds)
        data = mutate(seed, rnd)
        path = tmp_path / f"mutant{n}{'.mar' if data[:2] == b'PK' else '.tar.gz'}"
        path.write_bytes(data)
        problems, tree = readers.expected(path)   # anything but ArchiveError fails the test
        assert all(p and "\n" not in p for p in problems), problems
        if problems:
            refused += 1
            kind = problems[0].replace(str(path), "<file>")[:50]
            verdicts[kind] = verdicts.get(kind, 0) + 1
        else:
            ok.append((path, tree))
    java = readers.compile_java(tmp_path / "java-driver") if shutil.which("java") else None
    seen = readers.extract_all([p for p, _ in ok], tmp_path / "x", java)
    wrong = {str(p.name): readers.disagreements(tree, seen[p]) for p, tree in ok}
    wrong = {k: v for k, v in wrong.items() if v}
    print(f"\n{COUNT} mutants: {refused} refused, {len(ok)} verified; top refusals:",
          sorted(verdicts.items(), key=lambda kv: -kv[1])[:8])
    assert not wrong, wrong
