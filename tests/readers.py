"""The real readers an archive meets, and what the verifier says it holds.

`expected(path)` is the verifier's verdict and listing; `extract_all(cases)` extracts every
case with Python's zipfile/tarfile, GNU tar, Info-ZIP unzip and TorchServe 0.12's own
``ZipUtils`` (java.util.zip for .mar, commons-compress for .tar.gz, run from the
``model-server.jar`` the ``torchserve`` wheel ships), each into its own folder, and
returns each reader's tree. `disagreements` compares them. A reader that is not installed
is left out, and `missing_readers()` says which, so a test can skip with the reason.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mar_tasks.errors import ArchiveError
from mar_tasks.formats.archive_reader import Archive, content_digests, verify

DIR = "<folder>"
Tree = Dict[str, str]   # path below the model root -> sha256 of a file, or DIR

JAVA_DRIVER = """\
import java.io.*;
import org.pytorch.serve.archive.utils.ZipUtils;

/** Reads "zip|tgz<TAB>archive<TAB>dest" lines; extracts each with TorchServe's ZipUtils. */
public class Extract {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            String[] p = line.split("\\t");
            File dest = new File(p[2]);
            dest.mkdirs();
            try (InputStream is = new FileInputStream(p[1])) {
                if (p[0].equals("zip")) ZipUtils.unzip(is, dest);
                else ZipUtils.decompressTarGzipFile(is, dest);
                System.out.println("OK");
            } catch (Throwable t) {
                System.out.println("ERR " + t.toString().replace('\\n', ' '));
            }
            System.out.flush();
        }
    }
}
"""


def torchserve_jar() -> Optional[Path]:
    """model-server.jar of the installed ``torchserve`` wheel (``pip install --no-deps
    torchserve==0.12.0``), found without importing ``ts``."""
    spec = importlib.util.find_spec("ts")
    if spec is None or not spec.submodule_search_locations:
        return None
    jar = Path(list(spec.submodule_search_locations)[0]) / "frontend" / "model-server.jar"
    return jar if jar.is_file() else None


def missing_readers() -> List[str]:
    """The readers this machine lacks, with what installs them."""
    out = []
    if not (shutil.which("java") and shutil.which("javac")):
        out.append("java/javac (a JDK)")
    if torchserve_jar() is None:
        out.append("TorchServe's model-server.jar (pip install --no-deps torchserve==0.12.0)")
    if not shutil.which("unzip"):
        out.append("unzip (apt-get install unzip)")
    if not shutil.which("tar"):
        out.append("GNU tar")
    return out


def compile_java(workdir: Path) -> Optional[Path]:
    """Compile the driver against TorchServe's jar; the classpath folder, or None."""
    jar = torchserve_jar()
    if jar is None or not shutil.which("javac"):
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Extract.java").write_text(JAVA_DRIVER)
    subprocess.run(["javac", "-cp", str(jar), "Extract.java"], cwd=workdir, check=True,
                   capture_output=True, timeout=120)
    return workdir


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    with open(path, "rb") as f:
        return "zip" if f.read(2) == b"PK" else "tgz"


def expected(path: Path) -> Tuple[List[str], Optional[Tree]]:
    """(problems, tree) as the verifier sees the archive; tree is None unless it is OK."""
    try:
        archive = Archive(path)
        digests: Dict[str, str] = {}
        problems = verify(archive, digests)
        if problems:
            return problems, None
        if archive.kind == "tgz":
            digests = content_digests(archive)
        tree: Tree = {m.path: DIR for m in archive.members if m.is_dir and m.path}
        for m in archive.members:
            if not m.is_dir:
                tree[m.path] = digests[m.name if archive.kind == "zip" else m.path] \
                    if archive.kind != "folder" else _sha(path / m.path)
        return [], tree
    except ArchiveError as exc:
        return [str(exc)], None


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_of(root: Path) -> Tree:
    """Everything under `root`: files by sha256, folders, and anything else by its kind."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            out[rel] = (DIR if stat.S_ISDIR(mode) else _sha(full) if stat.S_ISREG(mode)
                        else f"<{stat.filemode(mode)}>")
    return out


def _strip_top(root: Path) -> Tree:
    """A tgz extracted by tar or tarfile: the one top folder's tree (anything beside it shows)."""
    tops = list(root.iterdir()) if root.exists() else []
    if len(tops) == 1 and tops[0].is_dir():
        return tree_of(tops[0])
    return {f"<beside the model folder: {p.name}>": "" for p in tops}


def _python(kind: str, archive: Path, dest: Path) -> Tree:
    if kind == "zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
        return tree_of(dest)
    with tarfile.open(archive, "r:gz") as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(dest, filter="data")
        else:
            t.extractall(dest)
    return _strip_top(dest)


def _run(cmd: List[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr.decode(errors='replace')[:200]}")


def _gnu_tar(archive: Path, dest: Path) -> Tree:
    dest.mkdir(parents=True)
    _run(["tar", "-xzf", str(archive), "-C", str(dest), "--no-same-owner", "--no-same-permissions"])
    return _strip_top(dest)


def _unzip(archive: Path, dest: Path) -> Tree:
    _run(["unzip", "-qq", "-o", str(archive), "-d", str(dest)])
    return tree_of(dest)


def extract_all(cases: List[Path], work: Path, java_dir: Optional[Path]) -> Dict[Path, Dict[str, object]]:
    """{archive: {reader: Tree or "error: ..."}} for every case and every installed reader."""
    results: Dict[Path, Dict[str, object]] = {c: {} for c in cases}
    java_jobs = []
    for n, case in enumerate(cases):
        kind = kind_of(case)
        readers = {"python": lambda a, d, k=kind: _python(k, a, d)}
        if kind == "zip" and shutil.which("unzip"):
            readers["unzip"] = _unzip
        if kind == "tgz" and shutil.which("tar"):
            readers["gnu tar"] = _gnu_tar
        for reader, fn in readers.items():
            dest = work / f"{n}-{reader.replace(' ', '_')}"
            try:
                results[case][reader] = fn(case, dest)
            except Exception as exc:  # any failure is that reader's verdict
                results[case][reader] = f"error: {type(exc).__name__}: {exc}"
        if java_dir is not None:
            java_jobs.append((case, kind, work / f"{n}-java"))
    if java_jobs:
        jar = torchserve_jar()
        feed = "".join(f"{k}\t{c}\t{d}\n" for c, k, d in java_jobs)
        r = subprocess.run(["java", "-cp", f"{jar}{os.pathsep}{java_dir}", "Extract"], input=feed,
                           capture_output=True, text=True, timeout=600)
        lines = r.stdout.splitlines()
        assert len(lines) == len(java_jobs), r.stdout + r.stderr
        for (case, kind, dest), line in zip(java_jobs, lines):
            results[case]["torchserve"] = tree_of(dest) if line == "OK" else f"error: {line}"
    return results


def disagreements(tree: Tree, seen: Dict[str, object]) -> List[str]:
    """How each reader's extraction differs from the verifier's listing `tree`: every file
    with the same bytes, nothing else but folders the listing implies."""
    implied = {p.rsplit("/", 1)[0] for p in tree if "/" in p}
    implied |= {"/".join(p.split("/")[:i]) for p in list(implied) for i in range(1, p.count("/") + 1)}
    out = []
    for reader, got in seen.items():
        if isinstance(got, str):
            out.append(f"{reader}: {got}")
            continue
        extra = {p for p, v in got.items() if p not in tree and not (v == DIR and p in implied)}
        missing = {p for p in tree if p not in got}
        changed = {p for p in tree if p in got and got[p] != tree[p]}
        if extra or missing or changed:
            out.append(f"{reader}: extra {sorted(extra)[:5]}, missing {sorted(missing)[:5]}, "
                       f"different {sorted(changed)[:5]}")
    return out
