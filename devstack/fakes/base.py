"""The machinery every provider fake shares: an HTTP server on loopback, routing, fault
injection, and a record of what was received.

A fake is a :class:`FakeProvider` subclass that declares its routes and how its provider
spells an error. It runs in a thread of the test process (``with SomeFake() as fake``,
port 0) or in its own process (``python -m devstack.fakes``). Either way it can be steered:

- from Python: ``fake.fail_next(429, retry_after=1)``, ``fake.delay_next(2.0)``,
  ``fake.hang_next()``, ``fake.latency = 0.2``, ``fake.requests``, ``fake.reset()``;
- over HTTP, under ``/_fake/`` (never recorded, never faulted)::

      POST   /_fake/faults    {"status": 503, "times": 2, "retry_after": 1}
                              {"delay": 2.5, "times": 1}   {"hang": true}
                              {"latency": 0.2}            (every request, until reset)
      DELETE /_fake/faults    drop pending faults and latency
      GET    /_fake/requests  what was received: [{"method", "path", "route", ...}]
      GET    /_fake/counts    {"<route name>": n, ...}
      POST   /_fake/reset     faults, latency, the record and the provider's data

Faults are consumed in order, one per request to the provider's API. A hang holds the
connection open without answering (up to ``hang_seconds``), which a client sees as its
read timeout. The guide is docs/fakes.md.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
# Longer than any client timeout a test or a task would set, short enough that a fake
# left hanging by a killed client frees its thread on its own.
DEFAULT_HANG_SECONDS = 60.0
# Bodies larger than this are refused: the fakes keep everything they receive in memory.
MAX_BODY_BYTES = 10 * 1024 * 1024
_ID_ALPHABET = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 24, alphabet: str = _ID_ALPHABET) -> str:
    """``prefix`` followed by ``length`` random characters, like providers' object ids."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next ``times`` requests."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hang: bool = False
    times: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "hang": self.hang,
            "times": self.times,
        }


@dataclass
class Request:
    """A request the fake received, as recorded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    route: str | None = None
    status: int | None = None
    at: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The header's value, looked up without regard to case."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "route": self.route,
            "status": self.status,
            "at": self.at,
        }


@dataclass
class Response:
    """What a route answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Self:
        return cls(
            status,
            json.dumps(payload).encode("utf-8"),
            {"Content-Type": "application/json", **(headers or {})},
        )


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


class FakeProvider:
    """Base of every fake: subclasses set ``name``, implement :meth:`routes` and
    :meth:`error_response`, and keep their data in attributes that :meth:`reset_data`
    clears."""

    name = "fake"
    default_port = 0
    log_requests = False  # python -m devstack.fakes logs each request, tests stay quiet

    def __init__(self, *, hang_seconds: float = DEFAULT_HANG_SECONDS) -> None:
        self.hang_seconds = hang_seconds
        self.latency = 0.0
        self.lock = threading.RLock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._requests: list[Request] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = [
            Route(method, re.compile(f"^{pattern}$"), route_name, handler)
            for method, pattern, route_name, handler in self.routes()
        ]

    # -- what a provider fake defines -------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        """(method, path regex, route name, handler(request, **groups)) tuples."""
        return []

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        """An error in the provider's own shape (injected faults use it too)."""
        return Response.json(status, {"error": {"message": message}}, headers)

    def reset_data(self) -> None:
        """Forget the objects the provider created (customers, records, ...)."""

    # -- running ----------------------------------------------------------------------

    def start(self, port: int | None = None, host: str = LOOPBACK) -> Self:
        """Serve on ``host:port`` (port 0: any free port) in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} fake is already running at {self.url}")
        self._stopping.clear()
        self._server = _Server((host, self.default_port if port is None else port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging requests are released at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self, port: int | None = None, host: str = LOOPBACK) -> None:
        """Serve in the calling thread (for ``python -m devstack.fakes``)."""
        self._stopping.clear()
        self._server = _Server((host, self.default_port if port is None else port), self)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._stopping.set()
            self._server.server_close()

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} fake is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash: ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    # -- steering ---------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (429, 5xx, ...), in the
        provider's error shape, with ``Retry-After`` when given."""
        self.add_fault(Fault(status=status, retry_after=retry_after, times=times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` requests normally, but ``seconds`` late."""
        self.add_fault(Fault(delay=seconds, times=times))

    def hang_next(self, *, times: int = 1) -> None:
        """Never answer the next ``times`` requests (the client times out)."""
        self.add_fault(Fault(hang=True, times=times))

    def add_fault(self, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError("a fault applies to at least one request")
        with self.lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self.latency = 0.0

    def reset(self) -> None:
        """Back to a fresh fake: no faults, no latency, nothing recorded, no data."""
        with self.lock:
            self.clear_faults()
            self._requests.clear()
            self.reset_data()

    @property
    def faults(self) -> list[Fault]:
        with self.lock:
            return list(self._faults)

    @property
    def requests(self) -> list[Request]:
        """Every API request received so far (control requests excluded), oldest first."""
        with self.lock:
            return list(self._requests)

    def count(self, route: str | None = None) -> int:
        """How many requests were received, for one route name or in all."""
        with self.lock:
            return sum(1 for r in self._requests if route is None or r.route == route)

    @property
    def counts(self) -> dict[str, int]:
        """Requests received per route name (``None`` routes as ``"unknown"``)."""
        with self.lock:
            return dict(collections.Counter(r.route or "unknown" for r in self._requests))

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01
    ) -> None:
        """Wait until ``predicate()`` is true; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} fake: condition not met in {timeout}s")
            time.sleep(interval)

    # -- serving one request ----------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self.lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault

    def dispatch(self, request: Request) -> Response | None:
        """The response to ``request``, or None to hang up without answering."""
        if request.path.startswith("/_fake/") or request.path == "/_fake":
            return self._control(request)
        route, groups = self._match(request)
        request.route = route.name if route else None
        with self.lock:
            self._requests.append(request)
        response = self._respond(request, route, groups)
        request.status = response.status if response else None
        return response

    def _respond(
        self, request: Request, route: Route | None, groups: dict[str, str]
    ) -> Response | None:
        fault = self._next_fault()
        pause = self.latency + (fault.delay if fault else 0.0)
        if fault and fault.hang:
            self._stopping.wait(self.hang_seconds)
            return None
        if pause and self._stopping.wait(pause):
            return None
        if fault and fault.status:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = _retry_after_value(fault.retry_after)
            return self.error_response(fault.status, _reason(fault.status), headers)
        if route is None:
            allowed = any(r.pattern.match(request.path) for r in self._routes)
            if allowed:
                return self.error_response(405, f"Method {request.method} not allowed")
            return self.error_response(404, f"Unrecognized request URL ({request.path})")
        return route.handler(request, **groups)

    def _match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != request.method:
                continue
            match = route.pattern.match(request.path)
            if match:
                return route, match.groupdict()
        return None, {}

    def _control(self, request: Request) -> Response:
        action = (request.method, request.path.rstrip("/"))
        if action == ("GET", "/_fake/requests"):
            return Response.json(200, [r.to_json() for r in self.requests])
        if action == ("GET", "/_fake/counts"):
            return Response.json(200, self.counts)
        if action == ("GET", "/_fake/faults"):
            return Response.json(
                200, {"latency": self.latency, "faults": [f.to_json() for f in self.faults]}
            )
        if action == ("DELETE", "/_fake/faults"):
            self.clear_faults()
            return Response.json(200, {"faults": []})
        if action == ("POST", "/_fake/reset"):
            self.reset()
            return Response.json(200, {"reset": True})
        if action == ("POST", "/_fake/faults"):
            return self._control_add_fault(request)
        if action == ("GET", "/_fake"):
            return Response.json(200, {"name": self.name, "counts": self.counts})
        return Response.json(404, {"error": f"no control endpoint {request.method} {request.path}"})

    def _control_add_fault(self, request: Request) -> Response:
        try:
            spec = request.json()
            if not isinstance(spec, dict):
                raise TypeError("expected a JSON object")
            if "latency" in spec:
                self.latency = float(spec["latency"])
                return Response.json(200, {"latency": self.latency})
            fault = Fault(
                status=int(spec["status"]) if spec.get("status") else None,
                retry_after=float(spec["retry_after"]) if spec.get("retry_after") else None,
                delay=float(spec.get("delay", 0.0)),
                hang=bool(spec.get("hang", False)),
                times=int(spec.get("times", 1)),
            )
            if not (fault.status or fault.delay or fault.hang):
                raise ValueError("give one of status, delay, hang or latency")
            self.add_fault(fault)
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(201, fault.to_json())


def _retry_after_value(seconds: float) -> str:
    # Retry-After is delay-seconds, an integer (RFC 9110 §10.2.3); round up, never to 0
    # when a delay was asked for.
    return str(max(int(-(-seconds // 1)), 0))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The fakes are restarted often in tests; do not wait out TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        provider = self.server.provider
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(provider.error_response(413, "Request entity too large"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=dict(self.headers.items()),
            body=body,
        )
        try:
            response = provider.dispatch(request)
        except Exception as exc:
            response = provider.error_response(500, f"fake {provider.name} crashed: {exc!r}")
        if response is None:
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet in tests; `python -m devstack.fakes` turns on logging of its own.
        if self.server.provider.log_requests:
            super().log_message(format, *args)
