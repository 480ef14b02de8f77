"""What every server here does to be safe by default: a free port checked first, only its own Host
answered (no DNS rebinding), and, unless asked otherwise, nothing but reading.

Used by the draw page (mnist.reading.serve) and optuna-dashboard (hpo.dashboard); needs no web framework.
"""
from __future__ import annotations

import errno
import socket
from typing import Any, Callable, Iterable

from mnist.errors import UserError

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]
READING = ("GET", "HEAD", "OPTIONS")


def reserve_port(port: int, host: str) -> socket.socket:
    """Bind `port` now and hold it (a bound socket, not listening), refused in one line when it is taken:
    what starts meanwhile (Ray's processes take free ports) cannot get it. Close it just before the
    server binds the port."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a TCP port (0 to 65535)")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise UserError(f"--host {host}: not an address or a name this machine knows "
                        f"({getattr(error, 'strerror', None) or error})") from None
    probe = socket.socket(family, socket.SOCK_STREAM)
    # As the servers themselves do: a port whose last connections linger in TIME_WAIT is free.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(address)
    except OSError as error:
        probe.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}; {BIND_ADVICE.get(error.errno, '')}"
                        .rstrip("; ")) from None
    return probe


# What to do when a bind fails, by the reason: only a taken port is solved by another port.
BIND_ADVICE = {errno.EADDRINUSE: "choose another --port",
               errno.EADDRNOTAVAIL: "--host must be an address of this machine (or 0.0.0.0 for all of them)",
               errno.EACCES: "ports below 1024 need root: choose one above 1023"}


def check_port_free(port: int, host: str) -> None:
    """Refuse, in one line, a port that something already listens on (before anything slow starts)."""
    reserve_port(port, host).close()


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers a browser sends for this server: its address (and localhost for loopback)."""
    names = {host}
    if host in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {f"{name}:{port}" for name in names} | ({name for name in names} if port == 80 else set())


def guarded(app: WsgiApp, host: str, port: int, allow_edit: bool = True) -> WsgiApp:
    """`app` answering only requests whose Host is this server's own (a page of another site that a
    rebinding DNS points at 127.0.0.1 sends its own name) and, unless `allow_edit`, only reading methods.

    A server bound to every interface (0.0.0.0) is meant to be reached by any name: no Host check.
    """
    hosts = None if host in ("0.0.0.0", "::") else allowed_hosts(host, port)

    def app_with_guard(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if hosts is not None and environ.get("HTTP_HOST", "") not in hosts:
            return _refuse(start_response, "403 Forbidden", f"this server answers only to {sorted(hosts)[0]}")
        if not allow_edit and environ.get("REQUEST_METHOD", "GET") not in READING:
            return _refuse(start_response, "405 Method Not Allowed", "read-only (start it with --allow-edit to edit)")
        return app(environ, start_response)
    return app_with_guard


def _refuse(start_response: Callable, status: str, reason: str) -> list[bytes]:
    body = (reason + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
