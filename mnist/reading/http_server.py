"""waitress, held to deadlines: what the draw page is served by.

waitress alone lets a slow client hold a connection as long as it sends a byte now and then (its
channel timeout restarts with every byte), takes 100 connections at most, and reads bodies up to
1 GiB into a temporary file before the application can refuse them. So 120 clients sending a
header a byte a second shut everyone else out, and a 300 MB upload is written to disk in full
before its 413. Here:
- every request must bring its headers within HEADER_DEADLINE_S of its first byte, and its body
  within BODY_DEADLINE_S, else its connection is closed (checked every second);
- up to CONNECTION_LIMIT connections are taken, so that slow clients waiting for their deadline do
  not fill the server;
- a body over the upload limit is refused from its Content-Length (or, chunked, as soon as it
  passes it), with the JSON answer the page reads, before it is read.
(waitress's channel and parser classes are extended; waitress>=3.0,<4 is the range tested.)
"""
from __future__ import annotations

import json
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import RequestEntityTooLarge

HEADER_DEADLINE_S = 10  # a browser sends its headers at once; 10 s allows a poor mobile link
# A 16 MB photo at 2 Mbit/s: about a minute. Slower links read the digit from a smaller photo.
BODY_DEADLINE_S = 60
CONNECTION_LIMIT = 1000  # waitress's default is 100: a hundred slow clients would fill it
IDLE_TIMEOUT_S = 30  # a kept-alive connection with no request in it (waitress: 120 s)
CHECK_EVERY_S = 1  # how often the deadlines are looked at (waitress's cleanup interval: 30 s)


class JsonTooLarge(RequestEntityTooLarge):
    """waitress's 413, answered in the JSON the page reads instead of its text page."""

    def to_response(self, ident: str | None = None) -> tuple[str, list, bytes]:
        body = json.dumps({"error": self.body}).encode()
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class TimedParser(HTTPRequestParser):
    """A request being read, with the moment its first byte came."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if isinstance(self.error, RequestEntityTooLarge) and not isinstance(self.error, JsonTooLarge):
            self.error = JsonTooLarge(f"file too large (over {self.adj.max_request_body_size // 2**20} MB)")
        return consumed

    def late(self, now: float) -> bool:
        allowed = BODY_DEADLINE_S if self.headers_finished else HEADER_DEADLINE_S
        return not self.completed and now - self.started > allowed


class TimedChannel(HTTPChannel):
    parser_class = TimedParser


class DeadlineServer(TcpWSGIServer):
    """waitress's TCP server, closing the connections whose request is late (see the module's docstring)."""

    channel_class = TimedChannel

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        moment = time.monotonic()
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and request.late(moment):
                channel.will_close = True  # the event loop closes it


def deadline_server(app: Any, host: str, port: int, threads: int, backlog: int, max_body: int) -> DeadlineServer:
    """The draw page's server: bound to host:port (0 = any free one), not yet serving (call .run())."""
    return DeadlineServer(app, host=host, port=port, threads=threads, backlog=backlog,
                          connection_limit=CONNECTION_LIMIT, channel_timeout=IDLE_TIMEOUT_S,
                          cleanup_interval=CHECK_EVERY_S, max_request_body_size=max_body)
