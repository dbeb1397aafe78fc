"""Start N teacher-training processes on this machine around a rendezvous store that listens on loopback only.

Why not torchrun: its rendezvous store (a TCPStore) binds `::`, every interface, and torch 2.13 has no option to
choose the bind address, so while a job runs anyone who reaches the machine can read and write the store the
workers set up their process group from. Here the parent binds the socket itself, on 127.0.0.1 unless the user
names another address, and hands it to the store server (TCPStore's `master_listen_fd`); the workers join it as
clients. With a loopback rendezvous the workers also pin gloo's and NCCL's own sockets to the loopback interface
(`pin_sockets_to_loopback`), or gloo would bind the address the host name resolves to.

    recsys teachers --nproc 2 --dataset DIR --out DIR [--master-addr 127.0.0.1 --master-port 0]

Parent -> worker protocol (environment): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
and LAUNCHER_ENV=1; a worker sees `launched_worker()` and joins with `client_store()`. Each worker's stdout and
stderr are forwarded line by line with a `[rank R]` prefix (progress bars are off in workers: a pipe is no tty). The
first worker that exits non-zero stops the others and `launch` raises `WorkerFailed` with its status and last
lines; SIGINT/SIGTERM to the parent stop every worker.

torchrun still works for users with a cluster launcher (`torchrun --nproc-per-node 2 --master-addr 127.0.0.1 -m
recsys.cli teachers ...`: every rank joins through env://), but torchrun's own store listens on all interfaces.
"""

from __future__ import annotations

import collections
import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

import torch.distributed as dist

from recsys.errors import ConfigError

LAUNCHER_ENV = "RECSYS_TEACHERS_LAUNCHER"
STORE_TIMEOUT = datetime.timedelta(minutes=5)   # a worker waits this long for the store / its peers to join
STOP_GRACE_S = 10.0                             # SIGTERM, then SIGKILL after this many seconds
POLL_S = 0.1
TAIL_LINES = 20


class WorkerFailed(Exception):
    """A worker exited non-zero (the others were stopped). `exit_status` is what the launcher should exit with."""

    def __init__(self, rank: int, returncode: int, tail: list[str]):
        self.rank, self.returncode, self.tail = rank, returncode, tail
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
        last = tail[-1] if tail else "(no output)"
        super().__init__(f"teachers worker rank {rank} {how}; the other workers were stopped. Its last line: {last}")

    @property
    def exit_status(self) -> int:
        return self.returncode if self.returncode > 0 else 128 - self.returncode


# --- worker side ------------------------------------------------------------------------------------------------

def launched_worker() -> bool:
    """True in a process started by `launch` (as opposed to torchrun or a plain one-process run)."""
    return os.environ.get(LAUNCHER_ENV) == "1"


def client_store() -> dist.TCPStore:
    """The launcher's rendezvous store, as a client (the server lives in the parent)."""
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                         is_master=False, timeout=STORE_TIMEOUT)


def is_loopback(addr: str) -> bool:
    """Whether every address `addr` resolves to is a loopback one (unresolvable: False)."""
    try:
        infos = socket.getaddrinfo(addr, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def pin_sockets_to_loopback() -> None:
    """With a loopback MASTER_ADDR, gloo's pair sockets and NCCL's bootstrap sockets bind the loopback interface
    (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME); values the user set are kept."""
    if not is_loopback(os.environ.get("MASTER_ADDR", "127.0.0.1")) or not hasattr(socket, "if_nameindex"):
        return
    names = [n for _, n in socket.if_nameindex() if n.startswith("lo")]
    if names:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", names[0])
        os.environ.setdefault("NCCL_SOCKET_IFNAME", names[0])


# --- parent side ------------------------------------------------------------------------------------------------

def listen(addr: str, port: int) -> socket.socket:
    """A listening TCP socket on exactly `addr`:`port` (port 0 = a free one)."""
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"--master-addr {addr!r}: cannot resolve it ({e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(f"--master-addr {addr!r} --master-port {port}: cannot listen there ({e.strerror})") from None
    return sock


class _Worker:
    """One worker process and the threads that forward its stdout and stderr (and keep the last lines of both:
    the CLI prints its error messages on stdout)."""

    def __init__(self, rank: int, command: Sequence[str], env: dict[str, str]):
        self.rank = rank
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.quiet = threading.Event()          # set: keep collecting lines but stop forwarding them
        self.proc = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.readers = [threading.Thread(target=self._forward, args=(src, dst), daemon=True)
                        for src, dst in ((self.proc.stdout, sys.stdout), (self.proc.stderr, sys.stderr))]
        for r in self.readers:
            r.start()

    def _forward(self, stream: IO[str], sink: IO[str]) -> None:
        for line in stream:
            self.tail.append(line.rstrip("\n"))
            if not self.quiet.is_set():
                sink.write(f"[rank {self.rank}] {line}")
                sink.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()


def _stop_all(workers: list[_Worker]) -> None:
    for w in workers:
        w.stop()
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        try:
            w.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()


def _first_failure(workers: list[_Worker]) -> _Worker | None:
    """Wait until every worker exited 0 (None) or one exited non-zero (that one)."""
    while True:
        codes = [w.proc.poll() for w in workers]
        for w, code in zip(workers, codes):
            if code not in (None, 0):
                return w
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_S)


def _raise_exit(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def launch(command: Sequence[str], nproc: int, master_addr: str = "127.0.0.1", master_port: int = 0) -> None:
    """Run `command` as `nproc` workers around a store listening on `master_addr`:`master_port` (0 = free port).

    Returns when every worker exited 0; raises WorkerFailed for the first that did not (after stopping the
    others), ConfigError for an unusable address or nproc. SIGTERM exits 143 after stopping the workers."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: expected a positive number of processes")
    if "RANK" in os.environ:
        raise ConfigError("--nproc inside an already launched job (RANK is set, e.g. by torchrun): use one launcher")
    sock = listen(master_addr, master_port)
    port = sock.getsockname()[1]
    fd = sock.detach()                           # the store owns the descriptor from here (and closes it)
    try:
        store = dist.TCPStore(master_addr, port, nproc, is_master=True, timeout=STORE_TIMEOUT,
                              wait_for_workers=False, master_listen_fd=fd)
    except Exception:
        os.close(fd)
        raise
    base = {**os.environ, LAUNCHER_ENV: "1", "MASTER_ADDR": master_addr, "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)}
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_exit) if in_main else None
    workers: list[_Worker] = []
    failed = None
    try:
        for rank in range(nproc):
            workers.append(_Worker(rank, command, {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
        failed = _first_failure(workers)
        if failed is not None:
            for w in workers:
                if w is not failed:
                    w.quiet.set()
    finally:
        _stop_all(workers)
        for r in (r for w in workers for r in w.readers):
            r.join(timeout=STOP_GRACE_S)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        del store
    if failed is not None:
        raise WorkerFailed(failed.rank, failed.proc.returncode, list(failed.tail))
