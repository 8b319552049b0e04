"""What a client may take of the service: time to send a request, connections held open, depth of a JSON body.

uvicorn closes idle keep-alive connections but sets no deadline on the request itself: a client that sends its
headers a byte at a time (slowloris), or stops half-way through a body, holds its connection for ever, and a
thousand such sockets use up the file descriptors so that nobody else gets in, health checks included.
:class:`GuardedH11Protocol` is uvicorn's h11 protocol with, as nginx has them, a deadline for the headers of
each request, a longest pause while its body arrives, and a cap on open connections that closes the longest
idle one (never one being served) when a new client arrives at the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_JSON_NESTING = 8
"""Deepest nesting a JSON request body may have; `{"images": [{"name": ..., "data": ...}]}` needs 3."""

FILE_DESCRIPTOR_RESERVE = 128
"""Descriptors kept back from connections for the model files, the catalogue, threads' pipes and the listener."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and the connection cap (the `serve` command's --header-timeout, --body-timeout, --max-connections)."""

    header_timeout: float = 10.0
    """Seconds from a connection's start, or the first byte of a later request on it, to the end of its headers."""
    body_timeout: float = 30.0
    """Longest pause, in seconds, between two pieces of a request body."""
    max_connections: int = 1000
    """Open connections at most; a new one beyond it closes the longest idle one, or gets 503 if none is idle."""


def raw_response(status: int, reason: str, message: str) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with the service's JSON error body, for use outside h11."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request deadlines and a connection cap (see the module docstring).

    `limits` is set on a subclass made by :func:`guarded_protocol`, since uvicorn builds protocols from a class.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._partial_request = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._arm(self.limits.header_timeout, self._headers_timed_out)
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:  # (part of) the headers of a request, not yet complete
            self._partial_request = self._partial_request or bool(data)
            if self._deadline is None:
                self._arm(self.limits.header_timeout, self._headers_timed_out)
        elif state is h11.SEND_BODY:  # each piece of the body restarts the pause allowed
            self._partial_request = False
            self._arm(self.limits.body_timeout, self._body_timed_out)
        else:  # the request is in; answering it is the application's business
            self._partial_request = False
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timeout now closes the connection if the client sends nothing more
        self._idle_since = self.loop.time()

    @property
    def serving(self) -> bool:
        """Whether a request on this connection is being answered (such a connection is never shed)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.serving:
            return
        message = (f"the request headers did not arrive within {self.limits.header_timeout:g} s; send a whole "
                   "request at once")  # fmt: skip
        self._close(raw_response(408, "Request Timeout", message) if self._partial_request else b"")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server, not the client, has stopped reading for now
            self._arm(self.limits.body_timeout, self._body_timed_out)
            return
        message = f"the request body paused for more than {self.limits.body_timeout:g} s; the request was dropped"
        started = self.cycle is not None and self.cycle.response_started
        self._close(b"" if started else raw_response(408, "Request Timeout", message))

    def _close(self, farewell: bytes) -> None:
        if farewell:
            with contextlib.suppress(Exception):
                self.transport.write(farewell)
        self.transport.close()

    def _make_room(self) -> None:
        """At the cap, close the longest idle connections; if every other one is being served, refuse this one."""
        live = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()]
        excess = len(live) - self.limits.max_connections
        if excess <= 0:
            return
        idle = sorted((c for c in live if c is not self and not c.serving), key=lambda c: c._idle_since)
        for connection in idle[:excess]:
            connection._disarm()
            connection._close(b"")
        if len(idle) < excess:
            message = f"the server is at its limit of {self.limits.max_connections} connections; try again shortly"
            self._disarm()
            self._close(raw_response(503, "Service Unavailable", message))


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class to hand uvicorn (`uvicorn.run(app, http=...)`) for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


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
