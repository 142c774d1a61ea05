"""The server's life: a listening socket, a server in a background thread (tests, notebooks)
and `serve_forever` for `tamx serve`."""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.applications import Starlette

from tamx.errors import TamxError

from .config import ServeConfig


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TamxError(f"cannot listen on {host}:{port} ({exc}); choose another --port or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class ServerThread:
    """Run an app on uvicorn in a background thread (tests, benchmarks, notebooks):
    `with ServerThread(app) as server: server.url`; stopped and joined on exit."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = _url(host, self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise TamxError(f"the server at {self.url} did not start")
            self.thread.join(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def serve_forever(config: ServeConfig, host: str = "127.0.0.1", port: int = 8765, echo=print) -> None:
    """Serve until interrupted; prints the URL (with the token when there is one)."""
    sock = bind(host, port)
    url = _url(host, sock.getsockname()[1]) + "/"
    if config.token:
        url += f"?token={config.token}"
    echo(f"tamx serve: {len(config.runs)} run(s){' and a model' if config.generator else ''}; open {url}")
    server = uvicorn.Server(uvicorn.Config(_app(config), log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _app(config: ServeConfig) -> Starlette:
    from .app import make_app  # the app module starts servers through this one

    return make_app(config)
