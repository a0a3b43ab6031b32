"""Archives read back the way TorchServe 0.12 reads them.

TorchServe's frontend unzips a .mar with Java's ``ZipInputStream`` (ZipUtils.unzip), which
trusts local headers, not the central directory. When a JDK is present we run exactly that
reader over our archives, including a zip64 one; ``unzip -t`` is a second independent reader.
"""
from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import HANDLER, run_cli, write_tree

JAVA = """
import java.io.*; import java.util.zip.*;
public class ReadMar { public static void main(String[] a) throws Exception {
  try (ZipInputStream z = new ZipInputStream(new BufferedInputStream(new FileInputStream(a[0])))) {
    ZipEntry e; byte[] buf = new byte[1 << 16];
    while ((e = z.getNextEntry()) != null) {
      long n = 0; int r; CRC32 c = new CRC32();
      while ((r = z.read(buf)) > 0) { n += r; c.update(buf, 0, r); }
      System.out.println(e.getName() + " " + n + " " + Long.toHexString(c.getValue()));
    }
  }
}}
"""


@pytest.fixture(scope="module")
def java_reader(tmp_path_factory):
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK on this machine")
    d = tmp_path_factory.mktemp("java")
    (d / "ReadMar.java").write_text(JAVA)
    subprocess.run(["javac", "ReadMar.java"], cwd=d, check=True)
    return d


def java_listing(reader: Path, mar: Path) -> dict:
    out = subprocess.run(["java", "-cp", str(reader), "ReadMar", str(mar)], check=True,
                         capture_output=True, text=True).stdout
    return {name: (int(n), int(crc, 16)) for name, n, crc in (l.rsplit(" ", 2) for l in out.splitlines())}


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_java_zip_input_stream_reads_every_entry(java_reader, model: Path, tmp_path: Path, fmt):
    assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service",
                    "--archive-format", fmt], tmp_path) == 0
    with zipfile.ZipFile(tmp_path / "m.mar") as z:
        expected = {i.filename: (i.file_size, i.CRC) for i in z.infolist()}
    assert java_listing(java_reader, tmp_path / "m.mar") == expected


def test_unzip_tests_the_archive(model: Path, tmp_path: Path):
    if not shutil.which("unzip"):
        pytest.skip("no unzip")
    assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service"], tmp_path) == 0
    r = subprocess.run(["unzip", "-t", "m.mar"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "No errors detected" in r.stdout


@pytest.fixture(scope="module")
def zip64_archive(tmp_path_factory) -> Path:
    """One 5 GiB (sparse, so no disk is used for the input) model archived once."""
    root = tmp_path_factory.mktemp("zip64")
    write_tree(root / "model", {"service.py": HANDLER})
    with open(root / "model/big.bin", "wb") as f:
        f.truncate(5 * 1024**3)
    assert run_cli(["--model-name", "big", "--model-path", "model", "--handler", "service", "-q"],
                   root) == 0
    return root / "big.mar"


@pytest.mark.slow
def test_zip64_reads_back_fully_in_python(zip64_archive: Path):
    """Every byte through Python's zipfile; it checks the CRC at the end."""
    with zipfile.ZipFile(zip64_archive) as z:
        info = z.getinfo("big.bin")
        assert info.file_size == 5 * 1024**3 and info.compress_type == zipfile.ZIP_DEFLATED
        n = 0
        with z.open(info) as f:
            while block := f.read(1 << 24):
                n += len(block)
        assert n == info.file_size


@pytest.mark.slow
def test_zip64_reads_back_in_java(java_reader, zip64_archive: Path):
    with zipfile.ZipFile(zip64_archive) as z:
        info = z.getinfo("big.bin")
    listing = java_listing(java_reader, zip64_archive)
    assert listing["big.bin"] == (info.file_size, info.CRC)
