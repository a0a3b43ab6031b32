"""A TCP proxy on 127.0.0.1 that misbehaves on purpose, in front of the test S3 server.

Modes: ``reset`` (accept, then close with a TCP reset), ``stall`` (accept, read, never
answer), ``truncate`` (relay the request, return only the first `limit` bytes of the answer,
then close: a HEAD passes, a download is cut), ``slow`` (relay both ways at ~1 MiB/s). Bounded: it serves until
stopped, and every connection ends when the proxy stops.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import List, Tuple


class FaultProxy:
    def __init__(self, upstream: Tuple[str, int], mode: str, limit: int = 2000) -> None:
        self.upstream = upstream
        self.mode = mode
        self.limit = limit  # truncate: bytes of each answer let through
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads: List[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        try:
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.mode == "stall":
                while not self.stop.is_set():
                    try:
                        if not conn.recv(65536):
                            return
                    except socket.timeout:
                        continue
                return
            up = socket.create_connection(self.upstream, timeout=5)
            up.settimeout(0.2)
            sent_back = 0
            with up:
                while not self.stop.is_set():
                    moved = False
                    for src, dst, back in ((conn, up, False), (up, conn, True)):
                        try:
                            data = src.recv(65536)
                        except socket.timeout:
                            continue
                        if not data:
                            return
                        moved = True
                        if back and self.mode == "truncate":
                            dst.sendall(data[: max(0, self.limit - sent_back)])
                            sent_back += len(data)
                            if sent_back >= self.limit:
                                return
                            continue
                        if self.mode == "slow":  # ~1 MiB/s each way
                            for i in range(0, len(data), 16384):
                                dst.sendall(data[i:i + 16384])
                                time.sleep(0.016)
                            continue
                        dst.sendall(data)
                    if not moved:
                        time.sleep(0.001)
        except OSError:
            pass
        finally:
            conn.close()
