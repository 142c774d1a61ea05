"""The ASGI app of `tamx serve` (Starlette on uvicorn): the report page, a list of runs and
samples, a JSON API and the serve-only script that adds live controls to the page.

The parts: `handlers` (the pages and API, one method per route), `auth` (the token, same-origin
writes, security headers), `caches` (opened runs, recomputed maps, list rows), `inputs` (request
parsing and bounds), `lifecycle` (sockets, `ServerThread`, `serve_forever`), `config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .auth import SERVE_CSP, Guard, new_token
from .config import LOOPBACK, ServeConfig, run_names
from .handlers import Handlers, error_response
from .lifecycle import ServerThread, serve_forever

__all__ = [
    "LOOPBACK",
    "SERVE_CSP",
    "ServeConfig",
    "ServerThread",
    "make_app",
    "new_token",
    "run_names",
    "serve_forever",
]


def make_app(runs: dict[str, str | os.PathLike] | ServeConfig, **options: Any) -> Starlette:
    """The app over `runs` (name -> run folder), or over a full `ServeConfig`."""
    config = runs if isinstance(runs, ServeConfig) else ServeConfig({k: Path(v) for k, v in runs.items()}, **options)
    if config.generator is not None:  # the output run is served too, under a name of its own
        config.runs, config.generator.run_name = _with_output_run(config.runs, config.generator.out)
    middleware = [Middleware(Guard, token=config.token)]
    if config.allowed_hosts:
        # DNS rebinding: a page of another site must not reach a loopback server through its own name
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts)))
    return Starlette(
        routes=Handlers(config).routes(),
        middleware=middleware,
        exception_handlers={HTTPException: error_response},
    )


def _with_output_run(runs: dict[str, Path], out: Path) -> tuple[dict[str, Path], str]:
    """The runs with a model's output run among them, and its name (a served run's, if it is one)."""
    names = {path.resolve(): name for name, path in runs.items()}
    name = names.get(out.resolve())
    if name is not None:
        return runs, name
    base, k = out.name, 2
    name = base
    while name in runs:
        name, k = f"{base}-{k}", k + 1
    return {**runs, name: out}, name
