"""What a client may take of the service: body size, time to send a request, connections held open, JSON depth.

uvicorn closes idle keep-alive connections but sets no deadline on the request itself: a client that sends its
headers a byte at a time (slowloris), or stops half-way through a body, holds its connection for ever, and a
thousand such sockets use up the file descriptors so that nobody else gets in, health checks included.
:class:`ConnectionGuard` adds, as nginx has them, a deadline for the headers of each request, a longest pause
while its body arrives, and a cap on open connections that closes the longest idle one (never one being served)
when a new client arrives at the cap.

It does so without reaching into uvicorn: it wraps the protocol object uvicorn makes for each connection through
asyncio's public `Protocol` interface (it sees the bytes arrive and can close the transport), and wraps the
application through ASGI (it sees a request reach the application, its body being read and its answer finish).
The two meet through the connection's peer address, which ASGI passes as `scope["client"]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_NESTING = 8
"""Deepest nesting a JSON request body may have; `{"images": [{"name": ..., "data": ...}]}` needs 3."""

FILE_DESCRIPTOR_RESERVE = 128
"""Descriptors kept back from connections for the model files, the catalogue, threads' pipes and the listener."""


def raw_response(status: int, reason: str, message: str) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with the service's JSON error body, for use outside HTTP."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


# ---------------------------------------------------------------------------------------------------------------
# Request body size


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a request body over the limit, by its Content-Length before reading it, else while reading.

    Pure ASGI so it sees the body as it streams in: a multipart parser would otherwise spool the whole upload
    to disk before anyone could look at its size.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (f"the request body is over the {self.max_bytes / 1024 / 1024:g} MB upload limit; send smaller or "
                "fewer images per request (or start the server with a larger --max-upload-mb)")  # fmt: skip

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from fashionattr.serve.errors import error_response

        await error_response(413, self._message())(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)


# ---------------------------------------------------------------------------------------------------------------
# Deadlines and the connection cap


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and the connection cap (the `serve` command's --header-timeout, --body-timeout, --max-connections)."""

    header_timeout: float = 10.0
    """Seconds from a connection's start, or the first byte of a later request on it, to the end of its headers."""
    body_timeout: float = 30.0
    """Longest pause, in seconds, between two pieces of a request body."""
    max_connections: int = 1000
    """Open connections at most; a new one beyond it closes the longest idle one, or gets 503 if none is idle."""


Peer = tuple[str, int]


class ConnectionGuard:
    """Deadlines and a cap for every connection of one server: hand `protocol(...)` and `app(...)` to uvicorn.

    `uvicorn.Config(guard.app(asgi_app), http=guard.protocol(ProtocolClass), proxy_headers=False)`: the
    protocol wrapper watches each connection's bytes, the application wrapper tells it when a request is being
    served (proxy headers stay off so that `scope["client"]` is the connection's own address).
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[Peer, _GuardedConnection] = {}

    def protocol(self, inner: Callable[..., asyncio.Protocol]) -> type[asyncio.Protocol]:
        """A protocol factory for uvicorn's `http=`: each connection's protocol (made by `inner`) under watch."""
        guard = self

        class GuardedProtocol(_GuardedConnection):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(guard, inner(**kwargs))

        return GuardedProtocol

    def app(self, app: ASGIApp) -> ASGIApp:
        """The ASGI application, reporting each request's progress to its connection's guard."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            peer = _peer(scope.get("client")) if scope["type"] == "http" else None
            connection = self.open.get(peer) if peer is not None else None
            if connection is None:
                await app(scope, receive, send)
                return
            connection.request_started()

            async def watched_receive() -> Message:
                try:
                    return await asyncio.wait_for(receive(), self.limits.body_timeout)
                except TimeoutError:
                    connection.body_timed_out()
                    return {"type": "http.disconnect"}

            async def watched_send(message: Message) -> None:
                connection.responded = connection.responded or message["type"] == "http.response.start"
                await send(message)

            try:
                await app(scope, watched_receive, watched_send)
            finally:
                connection.request_finished()

        return guarded

    def make_room(self, arriving: _GuardedConnection) -> None:
        """At the cap, close the longest idle connections; if every other one is being served, refuse this one."""
        live = [c for c in self.open.values() if not c.closing]
        excess = len(live) - self.limits.max_connections
        if excess <= 0:
            return
        idle = sorted((c for c in live if c is not arriving and not c.serving), key=lambda c: c.idle_since)
        for connection in idle[:excess]:
            connection.close(b"")
        if len(idle) < excess:
            message = f"the server is at its limit of {self.limits.max_connections} connections; try again shortly"
            arriving.close(raw_response(503, "Service Unavailable", message))


def _peer(address: Any) -> Peer | None:
    if not address or len(address) < 2:
        return None
    return str(address[0]), int(address[1])


class _GuardedConnection(asyncio.Protocol):
    """One connection: forwards everything to the HTTP protocol inside, and closes the connection when a deadline
    passes (with a 408 if a request had begun to arrive)."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.loop = asyncio.get_event_loop()
        self.idle_since = self.loop.time()
        self.serving = False
        self.responded = False
        self.closing = False
        self._deadline: asyncio.TimerHandle | None = None
        self._partial_request = False
        self._bytes_while_serving = False

    # -- asyncio.Protocol, forwarded --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = _peer(transport.get_extra_info("peername"))
        if self.peer is not None:
            self.guard.open[self.peer] = self
        self.inner.connection_made(transport)
        self._arm(self.guard.limits.header_timeout, self._headers_timed_out)
        self.guard.make_room(self)

    def data_received(self, data: bytes) -> None:
        if self.serving:
            self._bytes_while_serving = True
        elif data:
            self._partial_request = True
            if self._deadline is None:
                self._arm(self.guard.limits.header_timeout, self._headers_timed_out)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.closing = True
        if self.peer is not None and self.guard.open.get(self.peer) is self:
            del self.guard.open[self.peer]
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- the application's progress ----------------------------------------------------------------------------------

    def request_started(self) -> None:
        self._disarm()
        self.serving = True
        self.responded = False
        self._partial_request = False
        self._bytes_while_serving = False

    def request_finished(self) -> None:
        self.serving = False
        self.idle_since = self.loop.time()
        if self._bytes_while_serving and not self.closing:  # part of a next request arrived meanwhile
            self._partial_request = True
            self._arm(self.guard.limits.header_timeout, self._headers_timed_out)

    def body_timed_out(self) -> None:
        message = (f"the request body paused for more than {self.guard.limits.body_timeout:g} s; the request was "
                   "dropped")  # fmt: skip
        self.close(b"" if self.responded else raw_response(408, "Request Timeout", message))

    # -- deadlines ------------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_timed_out(self) -> None:
        self._deadline = None
        if self.closing or self.serving:
            return
        message = (f"the request headers did not arrive within {self.guard.limits.header_timeout:g} s; send a whole "
                   "request at once")  # fmt: skip
        self.close(raw_response(408, "Request Timeout", message) if self._partial_request else b"")

    def close(self, farewell: bytes) -> None:
        self._disarm()
        if self.closing or self.transport is None:
            return
        self.closing = True
        if farewell:
            with contextlib.suppress(Exception):
                self.transport.write(farewell)
        self.transport.close()


def connection_budget(wanted: int) -> int:
    """At most `wanted` connections, and fewer if the process may not open that many files.

    The soft limit on open files is raised to the hard one first (often 1024 -> 65536 or more), as servers
    usually do. Connections must stay below it: once `accept` fails for want of a descriptor, no new client, not
    even a health check, gets in until one closes.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(1, min(wanted, soft - FILE_DESCRIPTOR_RESERVE))
