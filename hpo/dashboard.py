"""Watch a search in the browser: optuna-dashboard over the search's own Optuna study (optuna.db).

    python hpo/dashboard.py results/<name> [--port 8080]    # a finished, resumed or running search
    python hpo/search.py ... --dashboard [PORT]            # served by the search while it runs

Every epoch of every trial appears as an intermediate value while it trains, trials ASHA stopped
appear as PRUNED, and the tutorial's trial carries the user attribute `setting: tutorial`.
The dashboard serves on 127.0.0.1 only: the study is yours, not your network's.
"""
from __future__ import annotations

import argparse
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard

from hpo.searcher import check_any_study, optuna_storage
from mnist.errors import run_cli
from mnist.webserver import check_port_free, guarded

DEFAULT_PORT = 8080  # optuna-dashboard's own default
HOST = "127.0.0.1"


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request: the page's polling never queues behind a slow one."""
    daemon_threads = True
    # Closing the server does not wait for request threads: a browser's idle preconnection (a socket that never
    # sends its request) would otherwise hold Ctrl-C until the browser lets it go.
    block_on_close = False
    request_queue_size = 1024  # the listen backlog (socketserver's default of 5 dropped parallel page loads)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (TimeoutError, ConnectionError)):  # a client that went quiet or away
            super().handle_error(request, client_address)


class QuietHandler(WSGIRequestHandler):
    """No access log: the page polls every few seconds, and the console is the search's."""

    timeout = 30  # seconds a connection may take to send its request: a silent or trickling client lets go

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_dashboard(folder: Path, port: int, host: str = HOST, allow_edit: bool = False) -> Iterator[str]:
    """Serve optuna-dashboard for `folder`/optuna.db in a background thread; yields its URL.

    Read-only unless `allow_edit` (the dashboard can delete studies and trials), and only for
    requests whose Host is this address (DNS rebinding). The server thread is a daemon: Ctrl-C
    ends the process and the server with it, and leaving the block (the search's end) shuts it down.
    """
    check_port_free(port, host)
    app = optuna_dashboard.wsgi(optuna_storage(folder))
    server = make_server(host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)
    server.set_app(guarded(app, host, server.server_port, allow_edit))  # the port bound (0 = any free one)
    thread = threading.Thread(target=server.serve_forever, name="optuna-dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}/dashboard/"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Open a search's Optuna study in the browser (optuna-dashboard).")
    parser.add_argument("folder", help="the search's folder, e.g. results/<name> (holds optuna.db)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    parser.add_argument("--allow-edit", action="store_true",
                        help="let the page change the study (notes, deleting trials); read-only by default")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    check_port_free(args.port, HOST)
    check_any_study(folder)
    with serve_dashboard(folder, args.port, allow_edit=args.allow_edit) as url:
        print(f"dashboard of {folder}: {url}  (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:  # the way to stop it: not an error
            print("dashboard stopped", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
