"""Rebuilds in proportion to the change, and copy-free archives (issue 17), side by side.

    python benchmarks/incremental.py             # 2 GiB model, medians of 5 (~25 min on 2 cores)
    python benchmarks/incremental.py --quick     # 256 MiB model, medians of 3
    python benchmarks/incremental.py --no-tma    # leave torch-model-archiver out (slowest part)
    python benchmarks/incremental.py --sections C  # only some of the sections below

Everything runs as its own process (``doit``, ``mar-archive``, ``tar``,
``torch-model-archiver``), with one warm-up run of each first, interleaved (A B, B A, ...)
and medians reported; files are in the page cache, as in ``run.py``. The model is
``run.py``'s: float32 N(0, 0.02) weights, a 50k-line vocabulary, a handler, a signature and
36 assets. Two file systems: ext4 (``benchmarks/work``, this machine's root) and XFS with
reflink on a loop-mounted sparse image (``fs_images.py``; needs root and xfsprogs, else that
half is skipped and says why).

A. ``doit archive`` after a one-file edit / ``doit archive:m --force``, default format, on
   each file system. Edits of four kinds, in turn: the handler, the vocabulary, one asset
   edited, one asset added. Ratio: the median over all edits / the median forced build.
B. On XFS: share of the output's blocks that the file system marks shared (FIEMAP) after a
   zip-store and a no-archive build; a zip-store build / ``tar -cf`` of the same folder.
C. A first full build on ext4 (``mar-archive``, default format) against torch-model-archiver
   0.12 and ``tar -cf``; peak RSS of a full build and of a rebuild.

Left out: the first ``doit`` run of a project (doit hashes every input then: run.py's
section 5b), a cold page cache, the freeing of a replaced archive's blocks beyond what
the build's own process waits for (see ``mar_tasks/atomic.py``), and the
writeback of what earlier runs wrote (:func:`settle` syncs before each timed run, for
every side alike, in every section; each run's own writeback within its process is counted).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fs_images import Unavailable, mount_xfs, tree_shared_bytes  # noqa: E402
from run import PY, WORK, interleaved, make_model, peak_rss_mib, reference_venv, sh, timed  # noqa: E402

EDITS = ["handler", "vocab", "asset edited", "asset added"]


def make_project(root: Path, model_src: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copytree(model_src, root / "model")
    (root / "dodo.py").write_text("from mar_tasks import task_archive  # noqa: F401\n")
    (root / "pyproject.toml").write_text(
        '[tool.mar_tasks.models.m]\nmodel-path = "model"\nhandler = "handler"\nexport-path = "out"\n')
    return root


def edit(model: Path, kind: str, n: int) -> None:
    if kind == "handler":
        with open(model / "handler.py", "a") as f:
            f.write(f"# edit {n}\n")
    elif kind == "vocab":
        with open(model / "vocab.txt", "a") as f:
            f.write(f"token_new_{n}\n")
    elif kind == "asset edited":
        with open(model / "assets/asset_07.json", "a") as f:
            f.write(f" {n}")
    else:
        (model / "assets" / f"added_{n:03d}.json").write_text(f'{{"n": {n}}}')


def bench_rebuild(proj: Path, repeat: int) -> Dict[str, float]:
    """Section A on one file system: forced builds and rebuilds after each kind of edit."""
    doit = [PY, "-m", "doit"]
    sh(doit + ["archive"], proj)                       # first build: doit records the inputs
    sh(doit + ["archive:m", "--force"], proj)          # warm-up of both sides
    edit(proj / "model", "handler", 0)
    sh(doit + ["archive"], proj)
    counter = iter(range(1, 10_000))

    def rebuild(kind: str) -> Callable[[], float]:
        return lambda: timed(doit + ["archive"], proj, lambda: (edit(proj / "model", kind, next(counter)), settle()))

    runs: Dict[str, Callable[[], float]] = {"force": lambda: timed(doit + ["archive:m", "--force"], proj, settle)}
    runs |= {f"edit: {k}": rebuild(k) for k in EDITS}
    med = interleaved(runs, repeat)
    edits = [med[f"edit: {k}"] for k in EDITS]
    med["edit (all kinds)"] = statistics.median(edits)
    med["ratio"] = med["edit (all kinds)"] / med["force"]
    edit(proj / "model", "vocab", 9999)
    med["rss rebuild"] = rss_in(proj, doit + ["archive"])
    return med


def rss_in(proj: Path, cmd: List[str]) -> float:
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        return peak_rss_mib(cmd)
    finally:
        os.chdir(cwd)


def settle() -> None:
    """Before each timed run (not timed, the same for every side): write
    back what earlier runs and sections left dirty (2 GiB per run), so that no run pays with
    its CPU time for the kernel's writeback of another's output, which otherwise decides
    whichever side follows the heavier run."""
    os.sync()


def bench_sharing(xfs: Path, model: Path, repeat: int) -> Dict[str, float]:
    """Section B: on XFS, blocks shared by zip-store / no-archive outputs; zip-store vs tar."""
    out: Dict[str, float] = {}
    cli = [PY, "-m", "mar_tasks", "--model-name", "m", "--model-path", str(model), "--handler",
           "handler", "-f", "-q"]
    for fmt in ("zip-store", "no-archive"):
        dest = xfs / f"out-{fmt}"
        sh(cli + ["--archive-format", fmt, "--export-path", str(dest)])
        shared, total = tree_shared_bytes(dest / ("m.mar" if fmt == "zip-store" else "m"))
        out[f"shared {fmt}"] = shared / total
    tar_out = xfs / "m.tar"
    zs = cli + ["--archive-format", "zip-store", "--export-path", str(xfs / "out-zip-store")]
    tar = ["tar", "-cf", str(tar_out), "-C", str(model), "."]
    sh(zs), sh(tar)  # warm-up
    out |= interleaved({"zip-store build": lambda: timed(zs, before=settle),
                        "tar -cf": lambda: timed(tar, before=settle)}, repeat)
    tar_out.unlink()
    return out


def bench_first_build(model: Path, repeat: int, with_tma: bool) -> Dict[str, float]:
    """Section C on ext4: the CLI's full build against torch-model-archiver and tar -cf."""
    out = WORK / "inc-out"
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("ours", "tma"):
        (out / sub).mkdir(parents=True)
    ours = [PY, "-m", "mar_tasks", "--model-name", "bench", "--model-path", str(model),
            "--handler", "handler", "--export-path", str(out / "ours"), "-f", "-q"]
    tar = ["tar", "-cf", str(out / "bench.tar"), "-C", str(model), "."]
    runs: Dict[str, Callable[[], float]] = {"mar-archive": lambda: timed(ours, before=settle),
                                            "tar -cf": lambda: timed(tar, before=settle)}
    if with_tma:
        tma = reference_venv()
        extra = ",".join(str(p) for p in sorted(model.iterdir()) if p.name not in ("weights.bin", "handler.py"))
        ref = [str(tma), "--model-name", "bench", "--version", "1.0", "--serialized-file",
               str(model / "weights.bin"), "--handler", str(model / "handler.py"), "--extra-files", extra,
               "--export-path", str(out / "tma"), "-f"]
        runs["torch-model-archiver"] = lambda: timed(ref, before=settle)
    for fn in runs.values():  # warm-up
        fn()
    med = interleaved(runs, repeat)
    med["rss full"] = peak_rss_mib(ours)
    shutil.rmtree(out, ignore_errors=True)
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-tma", action="store_true")
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--sections", default="ABC", help="which of A, B, C to run")
    args = ap.parse_args()
    mib = 256 if args.quick else 2048
    repeat = args.repeat or (3 if args.quick else 5)
    WORK.mkdir(exist_ok=True)
    base = WORK / "incremental"
    model = base / "model"
    if not (model / "weights.bin").exists() or (model / "weights.bin").stat().st_size != mib << 20:
        make_model(model, 256, mib // 256)
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    print(f"# incremental rebuilds and block sharing: {size / 2**30:.2f} GiB model, medians of {repeat}")
    print(f"machine: {os.cpu_count()} cores, CPython {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")

    results: Dict[str, Dict[str, float]] = {}
    if "A" in args.sections:
        ext4 = make_project(base / "ext4-proj", model)
        results["ext4"] = bench_rebuild(ext4, repeat)
        shutil.rmtree(ext4)
    xfs_note = "(not run)"
    if "A" in args.sections or "B" in args.sections:
        try:
            with mount_xfs(base / "xfs", "24G") as mnt:
                proj = make_project(mnt / "proj", model)
                if "A" in args.sections:
                    results["xfs"] = bench_rebuild(proj, repeat)
                    shutil.rmtree(proj / "out")
                if "B" in args.sections:
                    results["sharing"] = bench_sharing(mnt, proj / "model", repeat)
        except Unavailable as why:
            xfs_note = f"(XFS left out: {why})"
    if "C" in args.sections:
        results["first"] = bench_first_build(model, max(3, repeat - 2) if not args.quick else repeat,
                                             not args.no_tma)
    report(results, xfs_note)
    if not args.quick:
        shutil.rmtree(base, ignore_errors=True)  # 2 GiB of model: not kept


def report(r: Dict[str, Dict[str, float]], xfs_note: str) -> None:
    if "ext4" in r or "xfs" in r:
        report_rebuild(r)
    if "sharing" in r:
        s = r["sharing"]
        print("\n## B. XFS: blocks shared with the inputs, zip-store against tar")
        print(f"| zip-store output: share of blocks shared (goal >= 90%) | {s['shared zip-store']:.1%} |")
        print(f"| no-archive output: share of blocks shared (goal >= 90%) | {s['shared no-archive']:.1%} |")
        print(f"| zip-store build / tar -cf (goal <= 0.5x) | {s['zip-store build']:.2f} s / "
              f"{s['tar -cf']:.2f} s = {s['zip-store build'] / s['tar -cf']:.2f}x |")
    elif xfs_note != "(not run)":
        print("\n## B. " + xfs_note)
    if "first" in r:
        report_first(r["first"])


def report_rebuild(r: Dict[str, Dict[str, float]]) -> None:
    print("\n## A. rebuild after a one-file edit / `doit archive:m --force` (default format)")
    print("| | ext4 | XFS (reflink) |")
    print("| --- | --- | --- |")
    for key in ["force", *(f"edit: {k}" for k in EDITS), "edit (all kinds)"]:
        row = [f"{r[fs][key]:.2f} s" if fs in r else "-" for fs in ("ext4", "xfs")]
        print(f"| {key} | {row[0]} | {row[1]} |")
    goals = {"ext4": "0.40", "xfs": "0.15"}
    print("| ratio (goal <= " + " / ".join(goals.values()) + ") | "
          + " | ".join(f"{r[fs]['ratio']:.2f}x" if fs in r else "-" for fs in ("ext4", "xfs")) + " |")
    print("| peak RSS of a rebuild (doit process) | "
          + " | ".join(f"{r[fs]['rss rebuild']:.0f} MiB" if fs in r else "-" for fs in ("ext4", "xfs")) + " |")


def report_first(f: Dict[str, float]) -> None:
    print("\n## C. first full build, ext4 (mar-archive, default format)")
    print(f"| mar-archive | {f['mar-archive']:.2f} s |")
    print(f"| tar -cf | {f['tar -cf']:.2f} s | time / tar -cf (goal <= 1.2x): {f['mar-archive'] / f['tar -cf']:.2f}x |")
    if "torch-model-archiver" in f:
        t = f["torch-model-archiver"]
        print(f"| torch-model-archiver 0.12 | {t:.2f} s | speed-up (goal >= 15x): {t / f['mar-archive']:.1f}x |")
    print(f"| peak RSS, mar-archive full build | {f['rss full']:.0f} MiB |")


if __name__ == "__main__":
    main()
