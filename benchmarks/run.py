"""Side-by-side benchmarks of mar_tasks against the tools it replaces; prints medians and ratios.

    python benchmarks/run.py            # full run (5-9 minutes on 2 cores)
    python benchmarks/run.py --quick    # small inputs, fewer repeats (~1 minute)

Everything is generated under benchmarks/work/ (git-ignored): the model folders, a private
venv with torch-model-archiver 0.12.0 (pure Python, no torch), and the doit projects.
Runs are interleaved (A B C, C B A, ...) and medians reported, because this machine is noisy.
Ratios are ours / reference: below 1 means faster (or smaller).

Every command runs as Python runs by default, with bytecode caching: PYTHONDONTWRITEBYTECODE
is dropped from the environment if set (it is in some sandboxes), because it makes every run
recompile mar_tasks' modules and any dodo file, a cost no user pays after the first run. The
warm-up run of each side writes its caches.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, List

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
PY = sys.executable
HANDLER = "def handle(data, context):\n    return data\n"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # see the module docstring


def sh(cmd: List[str], cwd: Path | None = None, env: Dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}\n{r.stderr[-2000:]}")


def timed(cmd: List[str], cwd: Path | None = None, before: Callable[[], None] | None = None) -> float:
    if before:
        before()
    t = time.perf_counter()
    sh(cmd, cwd)
    return time.perf_counter() - t


def interleaved(runs: Dict[str, Callable[[], float]], repeat: int) -> Dict[str, float]:
    """Median of `repeat` runs of each, in the order A B C, C B A, A B C, ...: what a run
    leaves behind (writeback, freed blocks, caches) slows the next one, so no run may always
    follow the same other run."""
    samples: Dict[str, List[float]] = {k: [] for k in runs}
    for i in range(repeat):
        for name, fn in list(runs.items())[:: 1 if i % 2 == 0 else -1]:
            samples[name].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


# -- inputs -------------------------------------------------------------------------------
def weights_block(mib: int) -> bytes:
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 0.02, size=mib * 1024 * 1024 // 4).astype(np.float32).tobytes()


def make_model(root: Path, weights_mib: int, repeat_block: int = 1) -> Path:
    """A folder like a real model: weights, 50k-line vocab, handler, signature, small assets."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "assets").mkdir(parents=True)
    block = weights_block(weights_mib)
    with open(root / "weights.bin", "wb") as f:
        for _ in range(repeat_block):
            f.write(block)
    (root / "vocab.txt").write_text("".join(f"token_{i}_{i * 7919 % 10007}\n" for i in range(50_000)))
    (root / "handler.py").write_text(HANDLER)
    (root / "signature.json").write_text(json.dumps({"inputs": [{"data_name": "x", "shape": [1, 3, 224, 224]}]}))
    for i in range(36):
        (root / "assets" / f"asset_{i:02d}.json").write_text(json.dumps({"id": i, "label": f"class {i}"} ) * (i + 1))
    return root


def reference_venv() -> Path:
    venv = WORK / "tma-venv"
    exe = venv / "bin" / "torch-model-archiver"
    if not exe.exists():
        sh([PY, "-m", "venv", str(venv)])
        sh([str(venv / "bin" / "pip"), "install", "-q", "torch-model-archiver==0.12.0"])
    return exe


# -- 1-4: one archive ----------------------------------------------------------------------
def bench_archive(model: Path, repeat: int, tma: Path) -> Dict[str, float]:
    out = WORK / "out"
    out.mkdir(exist_ok=True)
    ours = [PY, "-m", "mar_tasks", "--model-name", "bench", "--model-path", str(model),
            "--handler", "handler", "--export-path", str(out / "ours"), "-f", "-q"]
    extra = ",".join(str(p) for p in sorted(model.iterdir()) if p.name not in ("weights.bin", "handler.py"))
    ref = [str(tma), "--model-name", "bench", "--version", "1.0", "--serialized-file",
           str(model / "weights.bin"), "--handler", str(model / "handler.py"), "--extra-files", extra,
           "--export-path", str(out / "tma"), "-f"]
    (out / "ours").mkdir(exist_ok=True)
    (out / "tma").mkdir(exist_ok=True)
    tar = ["tar", "-cf", str(out / "bench.tar"), "-C", str(model), "."]
    med = interleaved({
        "mar-archive": lambda: timed(ours),
        "torch-model-archiver": lambda: timed(ref),
        "tar -cf": lambda: timed(tar),
    }, repeat)
    med["size ours"] = (out / "ours/bench.mar").stat().st_size
    med["size tma"] = (out / "tma/bench.mar").stat().st_size
    return med


def peak_rss_mib(cmd: List[str]) -> float:
    """Peak RSS of one child process, measured from a fresh wrapper so nothing else counts."""
    code = ("import resource,subprocess,sys; r=subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([PY, "-c", code, *cmd], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


# -- 5: doit parallel ----------------------------------------------------------------------
def make_doit_project(root: Path, models: Dict[str, Path]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dodo.py").write_text("from mar_tasks import task_archive  # noqa: F401\n")
    lines = ["[tool.mar_tasks.defaults]", 'export-path = "store"', 'handler = "handler"', ""]
    for name, path in models.items():
        lines += [f"[tool.mar_tasks.models.{name}]", f'model-path = "{path}"', ""]
    (root / "pyproject.toml").write_text("\n".join(lines))
    return root


def bench_doit_parallel(repeat: int, mib: int) -> Dict[str, float]:
    base = WORK / f"par{mib}"
    models = {}
    for i in range(8):
        m = base / "models" / f"m{i}"
        if not (m / "weights.bin").exists():
            make_model(m, mib)
            with open(m / "weights.bin", "r+b") as f:  # make each model's content unique
                f.write(bytes([i]) * 64)
        models[f"m{i}"] = m
    proj = make_doit_project(base / "proj", models)

    cpu: Dict[str, List[float]] = {}

    def run(n: int, threads: str = "", fresh: bool = False) -> float:
        """One `doit archive`; `fresh`: as in a clean checkout (no doit state, no archives).

        Also records the CPU seconds the run used (doit and its workers, all reaped)."""
        if fresh:
            for p in proj.glob(".doit.db*"):
                p.unlink()
            shutil.rmtree(proj / "store", ignore_errors=True)
        env = {**os.environ, "MAR_TASKS_THREADS": threads}
        args = ["-n", str(n), "-P", "process"] if n else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        sh([PY, "-m", "doit", *args, "archive", *([] if fresh else ["--force"])], proj, env)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        key = f"cpu n={n} threads={threads or 'auto'}{' fresh' if fresh else ''}"
        cpu.setdefault(key, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return wall

    out = interleaved({"doit -n 1": lambda: run(1), "doit -n 2": lambda: run(2),
                       "doit -n 1 (1 thread)": lambda: run(1, "1"),
                       "doit -n 2 (1 thread)": lambda: run(2, "1")}, repeat)
    # Apart: a fresh build writes every archive anew, whose writeback would slow the above.
    out |= interleaved({"fresh doit": lambda: run(0, fresh=True),
                        "fresh doit -n 1": lambda: run(1, fresh=True),
                        "fresh doit -n 2": lambda: run(2, fresh=True),
                        "doit --force": lambda: run(0)}, repeat)
    # What does not parallelise: interpreter, doit and task loading (a no-op run).
    out["fixed"] = statistics.median(timed([PY, "-m", "doit", "archive"], cwd=proj) for _ in range(repeat))
    out |= {k: statistics.median(v) for k, v in cpu.items()}
    return out


# -- 6: doit no-op over a monorepo ---------------------------------------------------------
PLAIN_DODO = textwrap.dedent('''
    """The minimal hand-written dodo a user would write: one zip per folder. It lives in its
    own file: doit loads every task creator of a dodo whatever task is asked for, so sharing
    a file with mar_tasks' tasks would charge their loading to this baseline too."""
    import os
    import zipfile

    def _zip(src, dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
            for root, _, files in os.walk(src):
                for f in sorted(files):
                    p = os.path.join(root, f)
                    z.write(p, os.path.relpath(p, src))

    def task_zip():
        for name in sorted(os.listdir("zoo")):
            src = os.path.join("zoo", name)
            deps = [os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs]
            yield {"name": name, "file_dep": deps, "targets": [f"plain/{name}.zip"],
                   "actions": [(_zip, [src, f"plain/{name}.zip"])]}
    ''')


USER_DODO = textwrap.dedent('''
    """A dodo of the user's own that makes its archives with archive_task(), one call per
    folder, in its own file (and state file): the pyproject's task_archive is not loaded."""
    import os
    from mar_tasks import archive_task

    def task_models():
        for name in sorted(os.listdir("zoo")):
            yield archive_task(name, "handler", os.path.join("zoo", name), export_path="user-store")
    ''')


def make_monorepo(root: Path, models: int, files: int) -> Path:
    """Made anew each run: plain doit re-hashes touched files forever, so a monorepo left
    over from an earlier run's touch phase would make the plain no-op look slow."""
    shutil.rmtree(root, ignore_errors=True)
    for m in range(models):
        d = root / "zoo" / f"model{m:04d}"
        (d / "assets").mkdir(parents=True)
        (d / "handler.py").write_text(HANDLER)
        for f in range(files - 1):
            sub = d / "assets" if f % 2 else d
            (sub / f"f{f:02d}.txt").write_text(f"model {m} file {f}\n" * 20)
    (root / "dodo.py").write_text("from mar_tasks import task_archive  # noqa: F401\n")
    (root / "dodo_plain.py").write_text(PLAIN_DODO)
    (root / "dodo_user.py").write_text(USER_DODO)
    (root / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.mar_tasks.defaults]
        export-path = "store"
        [tool.mar_tasks.model-dirs.zoo]
        handler = "handler"
        """))
    return root


def bench_noop(repeat: int, models: int, files: int) -> Dict[str, float]:
    """Ours (pyproject's task_archive), a user's dodo of archive_task() calls, and the plain
    dodo: each its own dodo file and its own --db-file (same backend), interleaved. Left out: the action's cost (nothing is built in a no-op)
    and what a real dodo adds on either side.

    Warm-up, the same for both: a first run (it builds), then, once the tree is older than
    mar_tasks' "racily clean" margin (listing_cache.RACY_NS: a listing of folders changed
    within 2 s of being read is not remembered; a real monorepo's folders are not seconds
    old), one no-op each."""
    from mar_tasks.tasks.remembered_listings import RACY_NS
    repo = make_monorepo(WORK / f"mono{models}x{files}", models, files)
    made = time.time()
    ours = [PY, "-m", "doit", "-f", "dodo.py", "--db-file", ".doit-ours.db"]
    plain = [PY, "-m", "doit", "-f", "dodo_plain.py", "--db-file", ".doit-plain.db"]
    user = [PY, "-m", "doit", "-f", "dodo_user.py", "--db-file", ".doit-user.db"]
    sh(ours + ["archive"], repo)
    sh(plain + ["zip"], repo)
    sh(user + ["models"], repo)
    time.sleep(max(0.0, made + RACY_NS / 1e9 + 0.5 - time.time()))
    sh(ours + ["archive"], repo)
    sh(plain + ["zip"], repo)
    sh(user + ["models"], repo)
    out = interleaved({"no-op ours": lambda: timed(ours + ["archive"], repo),
                       "no-op plain": lambda: timed(plain + ["zip"], repo),
                       "no-op user": lambda: timed(user + ["models"], repo),
                       "list ours": lambda: timed(ours[:3] + ["list", "--all"], repo),
                       "list plain": lambda: timed(plain[:3] + ["list", "--all"], repo)}, repeat)

    def touch_all() -> None:
        t = time.time() + 1000 * (1 + len(touch_runs))
        touch_runs.append(t)
        for p in (repo / "zoo").rglob("*"):
            if p.is_file():
                os.utime(p, (t, t))

    touch_runs: List[float] = []
    first_ours, second_ours, first_plain, second_plain = [], [], [], []
    for i in range(repeat):
        touch_all()
        pairs = [(ours + ["archive"], first_ours, second_ours), (plain + ["zip"], first_plain, second_plain)]
        for cmd, first, second in pairs[:: 1 if i % 2 == 0 else -1]:
            first.append(timed(cmd, repo))
            second.append(timed(cmd, repo))
    out.update({
        "touched 1st ours": statistics.median(first_ours),
        "touched 1st plain": statistics.median(first_plain),
        "touched 2nd ours": statistics.median(second_ours),
        "touched 2nd plain": statistics.median(second_plain),
    })
    code = ("import os,time; os.chdir(%r); from mar_tasks import project_tasks; "
            "t=time.perf_counter(); n=sum(1 for _ in project_tasks()); print(time.perf_counter()-t)") % str(repo)
    out["task load (in-process)"] = float(subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout)
    return out


def print_noop(n: Dict[str, float], nm: int, nf: int, repeat: int) -> None:
    print(f"\n## 6. doit over {nm} models x {nf} files ({nm * nf:,} inputs), plain dodo in its own "
          f"file and db, medians of {repeat} interleaved")
    print(f"| no-op `doit archive` / plain | {n['no-op ours']:.3f} s / {n['no-op plain']:.3f} s | "
          f"{n['no-op ours'] / n['no-op plain']:.2f}x (goal <= 1.15x) |")
    print(f"| no-op user dodo of `archive_task()` calls / plain | {n['no-op user']:.3f} s / "
          f"{n['no-op plain']:.3f} s | {n['no-op user'] / n['no-op plain']:.2f}x (goal <= 1.15x) |")
    print(f"| `doit list --all` / plain | {n['list ours']:.3f} s / {n['list plain']:.3f} s | "
          f"{n['list ours'] / n['list plain']:.2f}x (goal <= 1.3x) |")
    print(f"| 1st run after touching every input / plain | {n['touched 1st ours']:.3f} s / "
          f"{n['touched 1st plain']:.3f} s | {n['touched 1st ours'] / n['touched 1st plain']:.2f}x |")
    print(f"| 2nd run after touching every input / plain | {n['touched 2nd ours']:.3f} s / "
          f"{n['touched 2nd plain']:.3f} s | {n['touched 2nd ours'] / n['touched 2nd plain']:.2f}x (goal <= 1.0x) |")
    print(f"| task loading, in-process | {n['task load (in-process)']:.3f} s | |")


# -- 7: publish, against a real S3 server on loopback ----------------------------------------
def bench_store(repeat: int, mib: int) -> Dict[str, float]:
    """8 models of `mib` MiB on fresh clones: `doit archive` building everything, `doit
    publish` to an empty prefix (build and upload everything), and a no-op `doit publish`
    (nothing changed) vs. reading the inputs once. SeaweedFS runs on this machine, so the
    network is loopback: the figures leave out a real network's latency and bandwidth."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from s3_server import BUCKET, start
    gen = start(WORK / "seaweedfs")
    server = next(gen)
    try:
        env = server.env()
        src = WORK / f"store{mib}"
        if not (src / "zoo").exists():
            for i in range(8):
                make_model(src / "zoo" / f"m{i}", mib)
        toml = textwrap.dedent(f"""
            [tool.mar_tasks.defaults]
            export-path = "store"
            [tool.mar_tasks.model-dirs.zoo]
            handler = "handler"
            [tool.mar_tasks.publish]
            url = "s3://{BUCKET}/bench/model-store"
            """)
        (src / "pyproject.toml").write_text(toml)
        (src / "dodo.py").write_text("from mar_tasks import task_archive, task_publish  # noqa: F401\n")

        rounds = iter(range(1 << 30))

        def fresh(prefix: str = "bench/model-store") -> Path:
            dst = WORK / "store-clone"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("store", ".doit.db*", ".mar_tasks.*"))
            (dst / "pyproject.toml").write_text(toml.replace("bench/model-store", prefix))
            return dst

        def run(cmd: List[str], cwd: Path) -> float:
            t = time.perf_counter()
            r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(r.stdout + r.stderr)
            return time.perf_counter() - t

        sh([PY, "-m", "doit", "publish"], src, env)   # publishes every model

        def read_inputs() -> float:
            t = time.perf_counter()
            for p in sorted((src / "zoo").rglob("*")):
                if p.is_file():
                    with open(p, "rb") as f:
                        while f.read(1 << 20):
                            pass
            return time.perf_counter() - t

        out = interleaved({
            "fresh build": lambda: run([PY, "-m", "doit", "archive"], fresh()),
            "fresh publish everything": lambda: run([PY, "-m", "doit", "publish"],
                                                    fresh(f"bench/empty{next(rounds)}")),
            "fresh publish no-op": lambda: run([PY, "-m", "doit", "publish"], fresh()),
            "read inputs once": read_inputs,
        }, repeat)
        out["mib"] = mib
        return out
    finally:
        gen.close()


def print_store(s: Dict[str, float], repeat: int) -> None:
    print(f"\n## 7. 8 models of {int(s['mib'])} MiB through an S3 store (SeaweedFS on loopback), "
          f"fresh clones, medians of {repeat} interleaved")
    print(f"| fresh `doit archive`, building everything | {s['fresh build']:.2f} s |")
    print(f"| fresh `doit publish` to an empty prefix (build and upload all) | "
          f"{s['fresh publish everything']:.2f} s | {s['fresh publish everything'] / s['fresh build']:.2f}x of building |")
    print(f"| fresh `doit publish`, nothing changed (0 builds, 0 uploads) | {s['fresh publish no-op']:.2f} s |")
    print(f"| reading the inputs once (in this process) | {s['read inputs once']:.2f} s |")


# -- deflate variants: what each optimisation bought ----------------------------------------
def bench_deflate_variants(mib: int) -> Dict[str, float]:
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    from mar_tasks.formats.deflate import CHUNK, deflate_chunk
    data = weights_block(mib)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    out = {}
    size = 0

    def isal(workers: int) -> float:
        """Deflate every chunk; outputs are counted and dropped (this times deflate, not memory)."""
        nonlocal size
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            size = sum(map(len, ex.map(
                lambda i: deflate_chunk(chunks[i], i == len(chunks) - 1, chunks[i - 1] if i else b""),
                range(len(chunks)))))
        return time.perf_counter() - t

    for workers in (1, 2):
        out[f"isal-1 {workers} thread(s) s"] = statistics.median(isal(workers) for _ in range(3))
    out["isal-1 ratio"] = size / len(data)
    t = time.perf_counter()
    z6 = zlib.compress(data, 6)
    out["zlib-6 1 thread s"] = time.perf_counter() - t
    out["zlib-6 ratio"] = len(z6) / len(data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--noop-only", action="store_true", help="only section 6 (doit no-op)")
    ap.add_argument("--sizes", default="", help="with --noop-only: MODELSxFILES[,...], e.g. 1000x20,200x50")
    ap.add_argument("--store-only", action="store_true", help="only section 7 (S3 publish)")
    args = ap.parse_args()
    quick = args.quick
    WORK.mkdir(exist_ok=True)
    if args.store_only:
        print_store(bench_store(3 if quick else 5, 8 if quick else 32), 3 if quick else 5)
        return
    if args.noop_only:
        sizes = [(50, 20)] if quick else [(1000, 20), (200, 50), (5000, 10)]
        if args.sizes:
            sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
        for nm, nf in sizes:
            print_noop(bench_noop(3 if quick else 9, nm, nf), nm, nf, 3 if quick else 9)
        return
    mib = 16 if quick else 128
    repeat = 3 if quick else 5
    print(f"# mar_tasks benchmarks {'(quick)' if quick else ''}")
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{platform.python_implementation()} {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    tma = reference_venv()
    model = WORK / f"model{mib}"
    if not (model / "weights.bin").exists():
        make_model(model, mib)
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    print(f"\n## 1-3. one archive: {total / 2**20:.0f} MiB model ({mib} MiB float32 N(0,0.02) weights, "
          f"50k-line vocab, handler, signature, 36 assets); medians of {repeat}")
    a = bench_archive(model, repeat, tma)
    rows = [
        ("mar-archive (default format)", f"{a['mar-archive']:.3f} s"),
        ("torch-model-archiver 0.12 (default)", f"{a['torch-model-archiver']:.3f} s"),
        ("tar -cf (I/O floor)", f"{a['tar -cf']:.3f} s"),
        ("speed-up vs torch-model-archiver (goal >= 8x)", f"{a['torch-model-archiver'] / a['mar-archive']:.1f}x"),
        ("time / tar -cf (goal <= 2x)", f"{a['mar-archive'] / a['tar -cf']:.2f}x"),
        ("size / torch-model-archiver's (goal <= 1.01x)", f"{a['size ours'] / a['size tma']:.4f}x "
         f"({a['size ours']:,} vs {a['size tma']:,} bytes)"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")

    big_blocks = 2 if quick else 16
    big = WORK / f"big{big_blocks}"
    if not (big / "weights.bin").exists():
        make_model(big, 128, big_blocks) if not quick else make_model(big, mib, big_blocks)
    big_total = sum(p.stat().st_size for p in big.rglob("*") if p.is_file())
    rss = peak_rss_mib([PY, "-m", "mar_tasks", "--model-name", "big", "--model-path", str(big),
                        "--handler", "handler", "--export-path", str(WORK / "out/big"), "-f", "-q"])
    print(f"\n## 4. peak RSS archiving a {big_total / 2**30:.2f} GiB model (goal < 150 MB)")
    print(f"| mar-archive peak RSS | {rss:.0f} MiB |")

    pm = 8 if quick else 32
    # Section 5's ratios are about as large as the machine's run-to-run noise: more runs.
    repeat5 = 2 * repeat - 1
    p = bench_doit_parallel(repeat5, pm)
    print(f"\n## 5. doit over 8 models of {pm} MiB, --force, medians of {repeat5}")
    print(f"| doit -n 1 (one worker process; each build deflates on all cores) | {p['doit -n 1']:.2f} s |")
    print(f"| doit -n 2 -P process (two workers; each build on half the cores) | {p['doit -n 2']:.2f} s |")
    print(f"| speed-up -n 2 / -n 1 (goal >= 1.6x) | {p['doit -n 1'] / p['doit -n 2']:.2f}x |")
    print(f"| doit -n 1, MAR_TASKS_THREADS=1 | {p['doit -n 1 (1 thread)']:.2f} s |")
    print(f"| doit -n 2, MAR_TASKS_THREADS=1 | {p['doit -n 2 (1 thread)']:.2f} s |")
    print(f"| speed-up with 1 thread per build | "
          f"{p['doit -n 1 (1 thread)'] / p['doit -n 2 (1 thread)']:.2f}x |")
    # Bounds on what any scheduling of the same work could give: a run cannot take less than
    # its CPU time / cores, nor less than its one-core part (doit's start-up, task loading and
    # exit: the no-op run, `fixed`) plus the rest of its CPU time spread over the cores.
    cores = os.cpu_count() or 1
    f = p["fixed"]
    cpu2 = p["cpu n=2 threads=auto"]
    floor2 = f + max(0.0, cpu2 - f) / cores
    print(f"| CPU time of a run: -n 1 / -n 2 (all processes) | {p['cpu n=1 threads=auto']:.2f} s / "
          f"{cpu2:.2f} s |")
    print(f"| fixed cost of a doit run (no-op on the same project, one core) | {f:.2f} s |")
    print(f"| floor for -n 2 on {cores} cores: fixed + (CPU time - fixed) / cores | {floor2:.2f} s |")
    print(f"| highest speed-up over -n 1 that -n 2 could reach here (-n 1 time / that floor) | "
          f"{p['doit -n 1'] / floor2:.2f}x |")
    print(f"| speed-up of the build work (fixed cost removed), 1 thread per build | "
          f"{(p['doit -n 1 (1 thread)'] - f) / (p['doit -n 2 (1 thread)'] - f):.2f}x |")

    print(f"\n## 5b. first build from a clean checkout (no doit state), same 8 models, medians of {repeat5}")
    print(f"| fresh `doit archive` | {p['fresh doit']:.2f} s |")
    print(f"| fresh `doit -n 1 archive` | {p['fresh doit -n 1']:.2f} s |")
    print(f"| fresh `doit -n 2 archive` | {p['fresh doit -n 2']:.2f} s |")
    print(f"| speed-up -n 2 / -n 1, fresh | {p['fresh doit -n 1'] / p['fresh doit -n 2']:.2f}x |")
    print(f"| `doit archive --force` (state known: nothing to hash) | {p['doit --force']:.2f} s |")
    print(f"| cost of recording doit state on a first build (fresh / --force) | "
          f"{p['fresh doit'] / p['doit --force']:.2f}x |")

    for nm, nf in ([(50, 20)] if quick else [(1000, 20), (200, 50), (5000, 10)]):
        # Section 6's ratios are close to 1, well inside this machine's noise: more runs.
        print_noop(bench_noop(repeat5, nm, nf), nm, nf, repeat5)

    print_store(bench_store(repeat, 8 if quick else 32), repeat)

    d = bench_deflate_variants(mib)
    print(f"\n## what the deflate choices buy ({mib} MiB of weights, in memory)")
    for k, v in d.items():
        print(f"| {k} | {v:.4f} |")


if __name__ == "__main__":
    main()
