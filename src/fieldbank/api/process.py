"""`fieldbank serve` as a child process on a free loopback port: for the tests and benchmarks
that must talk to a real server over a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

POLL_INTERVAL_S = 0.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen
    base_url: str


def start_serve(data_dir: Path, *, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                startup_limit_s: float = 120, ready_path: str = "/health", headers: Mapping[str, str] | None = None,
                ready: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
                output: int | IO = subprocess.PIPE) -> Served:
    """Start the server and return once `ready_path` answers as `ready` wants; the caller stops it
    (`stop`). Fails with the server's output if it exits, or after `startup_limit_s`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fieldbank.cli", "serve", "--port", str(port), "--data-dir", str(data_dir),
         *extra_args],
        stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_limit_s
    try:
        while True:
            if process.poll() is not None:
                told = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"fieldbank serve exited with {process.returncode}: {told}")
            try:
                if ready(httpx.get(base_url + ready_path, headers=dict(headers or {}), timeout=1)):
                    return Served(process, base_url)
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"fieldbank serve did not answer {ready_path} in {startup_limit_s} s"
            time.sleep(POLL_INTERVAL_S)
    except BaseException:
        stop(process)
        raise


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


@contextmanager
def serving(data_dir: Path, **kwargs) -> Iterator[Served]:  # noqa: ANN003
    """`start_serve`, stopped on exit."""
    served = start_serve(data_dir, **kwargs)
    try:
        yield served
    finally:
        stop(served.process)
