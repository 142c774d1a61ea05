"""The ASGI app of `tamx serve` (Starlette on uvicorn): the report page, a JSON API and the
serve-only script that adds live controls to the page.

Explain runs in worker threads, never on the event loop; recomputed maps are cached (and
identical requests in flight share one computation). Nothing is written to a run unless the
user saves a setting as a variant, which goes through `tamx.pipeline.explain.explain_run`, as
`tamx explain` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import io
import json
import logging
import math
import os
import secrets
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tamx import ExplainSettings, Maps, Run, Sample, defaults, explain_sample, open_run
from tamx.errors import SampleError, TamxError
from tamx.explain import ECI_MODES
from tamx.figures import FigureStyle, save_figure, token_figure
from tamx.filters import FILTERS
from tamx.records import ID_MAX_LENGTH, check_sample_id
from tamx.report import colormap_lut, display_name, pack_array, page_data, page_json

from ..explain import check_kernel_fits, explain_run
from ..render import FigureOptions, sample_page

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# Same spirit as the report's CSP, plus this server ('self') for the serve script, its API and
# the compare page's frames; nothing else can be loaded or contacted.
SERVE_CSP = (
    "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline' 'self'; "
    "script-src 'unsafe-inline' 'self'; connect-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'"
)
HEADER_CSP = SERVE_CSP + "; frame-ancestors 'self'"  # frame-ancestors only works as a header
LIVE = "live"  # the variant name of maps recomputed for the page's settings, never stored
MAX_UPLOAD_BYTES = 64 << 20
FORM_OVERHEAD = 64 << 10  # multipart boundaries and the text fields, on top of the files
# A JSON body is an object of settings, at most one list (of sample ids) deep; deeper is refused
# before parsing (a parser recurses once per level).
JSON_DEPTH = 2
TOKEN_COOKIE = "tamx_token"
FIGURE_DPI = FigureOptions.dpi  # a downloaded figure is the one `tamx render --png` draws
# matplotlib's rcParams (the figures' fonts and sizes) are process-wide: one figure at a time
_FIGURE_LOCK = threading.Lock()


@dataclass
class ServeConfig:
    """What a server shows: runs by name, and optionally a model to generate with.

    token: required on every request when set (a `?token=` query, a `Bearer` header or the
    cookie set after the first); cache_size: recomputed map variants kept in memory.
    """

    runs: dict[str, Path]
    token: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK
    cache_size: int = 128
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    generator: Any = None  # tamx.pipeline.serve.model.Generator in model mode
    explain_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


def run_names(paths: list[str | os.PathLike]) -> dict[str, Path]:
    """A short unique name per run folder: its folder name, with -2, -3 ... on clashes."""
    names: dict[str, Path] = {}
    for path in paths:
        base = Path(path).resolve().name or "run"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names[name] = Path(path)
    return names


def http_error(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


async def _error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":
        message = f"no page or API route {request.url.path!r}; the page is at / and the API under /api"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path!r}"
    return JSONResponse({"status": exc.status_code, "message": message}, status_code=exc.status_code)


class _Guard:
    """Pure ASGI middleware: the access token, same-origin writes and security headers."""

    def __init__(self, app: Callable, token: str | None) -> None:
        self.app = app
        self.token = token

    def _matches(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        in_query = self.token is not None and self._matches(request.query_params.get("token", ""))
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        allowed = (
            self.token is None
            or in_query
            or any(self._matches(given) for given in (bearer, request.cookies.get(TOKEN_COOKIE, "")))
        )
        origin = request.headers.get("origin")
        foreign = origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", HEADER_CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                if in_query:  # the page's own requests then carry the token in a cookie
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    extra.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        denied = None
        if not allowed:
            denied = 401, "this server needs its token: open the URL it printed at start (?token=...)"
        elif scope["method"] not in ("GET", "HEAD") and foreign:
            denied = 403, "requests that change things must come from this server's own page"
        if denied is None:
            await self.app(scope, receive, send_with_headers)
        else:
            status, message = denied
            response = JSONResponse({"status": status, "message": message}, status_code=status)
            await response(scope, receive, send_with_headers)


class _MapCache:
    """Recomputed variants by key, least recently used dropped first; concurrent requests for
    the same key wait for one computation."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._done: OrderedDict[tuple, bytes] = OrderedDict()
        self._pending: dict[tuple, asyncio.Future] = {}

    async def get(self, key: tuple, compute: Callable[[], bytes], limiter: anyio.CapacityLimiter) -> bytes:
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        if key in self._pending:
            return await asyncio.shield(self._pending[key])
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await anyio.to_thread.run_sync(compute, limiter=limiter)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(value)
        if self.size > 0:
            self._done[key] = value
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        return value


class _Runs:
    """The served runs, opened read-only once each, with a small cache of loaded samples."""

    def __init__(self, paths: dict[str, Path], samples_kept: int = 8) -> None:
        self.paths = paths
        self._open: dict[str, Run] = {}
        self._samples: OrderedDict[tuple, Sample] = OrderedDict()
        self._kept = samples_kept
        self._lock = threading.Lock()

    def run(self, name: str) -> Run:
        if name not in self.paths:
            raise http_error(404, f"no run named {name!r}; this server has {', '.join(self.paths) or 'none'}")
        if name not in self._open:
            try:
                self._open[name] = open_run(self.paths[name])
            except TamxError as exc:
                raise http_error(404, f"run {name!r} cannot be opened yet: {exc}") from None
        return self._open[name]

    def existing(self) -> dict[str, Run]:
        """The runs that exist now (in model mode, the output run appears with its first sample)."""
        out = {}
        for name in self.paths:
            try:
                out[name] = self.run(name)
            except HTTPException:
                continue
        return out

    def version(self, name: str, sample_id: str) -> str:
        """A stamp that changes when the sample is rewritten (its commit's write token)."""
        try:
            check_sample_id(sample_id)
        except SampleError as exc:
            raise http_error(400, str(exc)) from None
        run = self.run(name)
        if sample_id not in run:
            known = run.sample_ids()
            raise http_error(404, f"run {name!r} has no sample {sample_id!r} (it has {', '.join(known[:5]) or 'none'})")
        try:
            return run.sample_version(sample_id)
        except TamxError as exc:  # rewritten or damaged right now
            raise http_error(409, f"{exc}; retry") from None

    def sample(self, name: str, sample_id: str) -> Sample:
        """A loaded sample with its media (blocking: call from a worker thread)."""
        key = (name, sample_id, self.version(name, sample_id))
        with self._lock:
            if key in self._samples:
                self._samples.move_to_end(key)
                return self._samples[key]
            sample = _read(lambda: self.run(name).sample(sample_id))
            self._samples[key] = sample
            while len(self._samples) > self._kept:
                self._samples.popitem(last=False)
            return sample


def _read(load: Callable[[], Any]) -> Any:
    """Run a store read, turning damage or a concurrent write into a 409 that says so."""
    try:
        return load()
    except (TamxError, OSError) as exc:
        raise http_error(
            409,
            f"{exc} (if `tamx explain` or `tamx encode` is writing this run right now, retry in a moment)",
        ) from None


def settings_from(query: dict[str, Any]) -> ExplainSettings:
    """ExplainSettings from query or JSON fields eci, filter, kernel_size (defaults: the paper's TAM,
    tamx.defaults, as `tamx explain`'s), checked as `tamx explain` checks its options."""
    given = query.get("kernel_size", defaults.KERNEL_SIZE)
    # an integer, as `--kernel-size` takes: no bool, no 5.5 cut to 5, no 1e999
    if isinstance(given, str) and given.strip().lstrip("+-").isdigit():
        given = _integer(given)
    if isinstance(given, bool) or not isinstance(given, int):
        raise http_error(400, f"kernel_size must be an odd integer, got {given!r}")
    try:
        return ExplainSettings(
            eci=str(query.get("eci", defaults.ECI)), filter=str(query.get("filter", defaults.FILTER)), kernel_size=given
        )
    except TamxError as exc:
        raise http_error(400, str(exc)) from None


def _integer(text: str) -> int:
    """A JSON or query integer within what an index can hold (sys.maxsize); a 400 past it."""
    try:
        value = int(text)
    except ValueError:  # over Python's 4300-digit limit of int(str)
        value = sys.maxsize + 1
    if abs(value) > sys.maxsize:
        shown = text if len(text) <= 20 else f"{text[:20]}... ({len(text)} digits)"
        raise http_error(400, f"the number {shown} is out of range (at most {sys.maxsize} in size)")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise http_error(400, f"the number {text[:20]} is out of range (not a finite float)")
    return value


def _not_a_number(name: str) -> None:
    raise http_error(400, f"{name} is not a number this API takes: numbers are finite")


def _depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(raw: bytes, depth: int = JSON_DEPTH) -> Any:
    """A request body as JSON, strictly: UTF-8, nesting at most `depth` deep, integers that fit
    an index, finite floats (no NaN, Infinity or 1e999); anything else is a 400 saying what."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise http_error(400, f"the request body is not valid JSON (not UTF-8: {exc})") from None
    if _depth(text) > depth:
        raise http_error(400, f"the request body nests deeper than this API takes ({depth} levels of [ and {{)")
    try:
        return json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_not_a_number)
    except json.JSONDecodeError as exc:
        raise http_error(400, f"the request body is not valid JSON ({exc})") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body of a request, at most `limit` bytes (a 413 past it, before reading more)."""
    length = request.headers.get("content-length", "")
    too_large = f"the request body is over {limit} bytes, the most this endpoint takes"
    if length.isdigit() and int(length) > limit:
        raise http_error(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise http_error(413, too_large)
    return bytes(body)


def json_response(data: Any, status_code: int = 200) -> Response:
    """Page data (or any run content) as JSON that every parser accepts (`tamx.report.page_json`)."""
    return Response(page_json(data), status_code=status_code, media_type="application/json")


def empty_page_data(model: str | None) -> dict[str, Any]:
    """The page's payload when there is no sample yet (model mode before the first generation)."""
    return {
        "id": "",
        "model": display_name(model) if model else "",
        "notice": None,
        "vision_size": 0,
        "images": [],
        "blocks": [],
        "segments": [],
        "answer_words": [],
        "candidates": [],
        "candidate_probs": [],
        "run": None,
        "mode": "generate",
        "image_sizes": [],
        "frames": [],
        "answer_probs": None,
        "n_context": 0,
        "variants": {},
        "default_variant": None,
        "shown_variants": [],
        "lut": pack_array(colormap_lut()),
    }


def make_app(runs: dict[str, str | os.PathLike] | ServeConfig, **options: Any) -> Starlette:
    """The app over `runs` (name -> run folder), or over a full `ServeConfig`."""
    config = runs if isinstance(runs, ServeConfig) else ServeConfig({k: Path(v) for k, v in runs.items()}, **options)
    generator = config.generator
    if generator is not None:  # the output run is served too, under a name of its own
        names = {path.resolve(): name for name, path in config.runs.items()}
        name = names.get(generator.out.resolve())
        if name is None:
            base, k = generator.out.name, 2
            name = base
            while name in config.runs:
                name, k = f"{base}-{k}", k + 1
            config.runs = {**config.runs, name: generator.out}
        generator.run_name = name
    store = _Runs(config.runs)
    cache = _MapCache(config.cache_size)
    limiter = anyio.CapacityLimiter(config.explain_threads)

    async def blocking(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=limiter)

    def sample_params(request: Request) -> tuple[str, str]:
        return request.path_params["run"], request.path_params["sample"]

    def explained(name: str, sample_id: str, settings: ExplainSettings, variant: str) -> tuple[Sample, Maps]:
        """The sample and its maps for settings (blocking); a window wider than every grid is a 400,
        as `tamx explain` refuses it (its cost grows as k^4)."""
        try:
            check_kernel_fits(store.run(name), [sample_id], settings)
        except TamxError as exc:
            raise http_error(400, str(exc)) from None
        sample = store.sample(name, sample_id)
        return sample, explain_sample(sample, settings, variant)

    def stored_page(name: str, sample_id: str) -> dict[str, Any]:
        sample = store.sample(name, sample_id)
        run = store.run(name)
        variants = _read(lambda: {v: run.maps(sample_id, v) for v in run.variants(sample_id)})
        return page_data(sample, variants, run.info)

    def first_sample() -> tuple[str, str] | None:
        for name, run in store.existing().items():
            ids = run.sample_ids()
            if ids:
                return name, ids[0]
        return None

    # ------------------------------------------------------------------ pages
    def opening_page(name: str | None, sample_id: str | None) -> dict[str, Any]:
        """The asked sample; a run's first sample; the first sample of any run; or an empty page."""
        if name is not None and sample_id is None:
            ids = _read(store.run(name).sample_ids)
            sample_id = ids[0] if ids else None
        if name is None or sample_id is None:
            first = first_sample()
            if first is None:
                return empty_page_data(generator.model_id if generator else None)
            name, sample_id = first
        return stored_page(name, sample_id)

    async def index(request: Request) -> Response:
        query = request.query_params
        data = await blocking(lambda: opening_page(query.get("run"), query.get("sample")))
        html = sample_page(
            data, index_href="/", csp=SERVE_CSP, scripts=["/static/serve.js"], styles=["/static/serve.css"]
        )
        return HTMLResponse(html)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; there is none

    async def compare(request: Request) -> Response:
        html = (STATIC / "compare.html").read_text()
        return HTMLResponse(html)

    # ------------------------------------------------------------------ API: reading
    async def api_config(request: Request) -> Response:
        return JSONResponse(
            {
                "eci_modes": list(ECI_MODES),
                "filters": list(FILTERS),
                "live_variant": LIVE,
                "model": generator.describe() if generator else None,
                "max_upload_bytes": config.max_upload_bytes,
            }
        )

    async def api_runs(request: Request) -> Response:
        def listing() -> list[dict[str, Any]]:
            return [
                {"id": name, "model": run.info.model_id, "samples": len(run.sample_ids())}  # no machine path
                for name, run in store.existing().items()
            ]

        return json_response(await blocking(listing))

    async def api_samples(request: Request) -> Response:
        name = request.path_params["run"]

        def listing() -> list[dict[str, Any]]:
            run = store.run(name)
            rows = []
            for sample_id in run.sample_ids():
                try:
                    summary = run.sample_summary(sample_id)
                    answer = run.sample_attrs(sample_id).get("meta", {}).get("answer")
                except (TamxError, OSError, KeyError, ValueError):
                    continue  # being rewritten right now: listed again on the next refresh
                rows.append({**summary, "answer": answer})
            return rows

        return json_response(await blocking(listing))

    async def api_sample(request: Request) -> Response:
        name, sample_id = sample_params(request)
        return json_response(await blocking(lambda: stored_page(name, sample_id)))

    async def api_live(request: Request) -> Response:
        """The maps of one sample recomputed for the settings in the query: {settings, name, view}."""
        name, sample_id = sample_params(request)
        settings = settings_from(dict(request.query_params))
        key = (name, sample_id, store.version(name, sample_id), json.dumps(settings.to_json(), sort_keys=True))

        def compute() -> bytes:
            sample, maps = explained(name, sample_id, settings, LIVE)
            bare = dataclasses.replace(sample, media=[])  # the view needs no images
            view = page_data(bare, {LIVE: maps}, store.run(name).info)["variants"][LIVE]
            body = {"settings": settings.to_json(), "name": settings.variant_name(), "view": view}
            return page_json(body).encode()

        body = await cache.get(key, compute, limiter)
        return Response(body, media_type="application/json")

    async def api_figure(request: Request) -> Response:
        """A PNG of one answer token's figure: a stored variant (?variant=) or live settings."""
        name, sample_id = sample_params(request)
        query = dict(request.query_params)
        try:
            index = int(query.get("index", 0))
        except ValueError:
            raise http_error(400, f"index must be an answer-token number, got {query.get('index')!r}") from None
        variant = query.get("variant")
        settings = None if variant and variant != LIVE else settings_from(query)

        def draw() -> bytes:
            if settings is None:
                sample, run = store.sample(name, sample_id), store.run(name)
                if variant not in run.variants(sample_id):
                    raise http_error(404, f"sample {sample_id!r} has no stored variant {variant!r}")
                maps = _read(lambda: run.maps(sample_id, variant))
            else:
                sample, maps = explained(name, sample_id, settings, settings.variant_name())
            n = len(sample.answer_positions)
            if not 0 <= index < n:
                raise http_error(400, f"sample {sample_id!r} has answer tokens 0..{n - 1}, not {index}")
            png = io.BytesIO()
            with _FIGURE_LOCK:
                save_figure(token_figure(sample, maps, index, FigureStyle(dpi=FIGURE_DPI)), png, "png", FIGURE_DPI)
            return png.getvalue()

        png = await blocking(draw)
        filename = f"{sample_id}-{variant if settings is None else settings.variant_name()}-token{index:03d}.png"
        return Response(
            png, media_type="image/png", headers={"content-disposition": f'attachment; filename="{filename}"'}
        )

    # ------------------------------------------------------------------ API: writing
    async def json_body(request: Request, limit: int) -> dict[str, Any]:
        body = parse_json(await read_body(request, limit))
        if not isinstance(body, dict):
            raise http_error(400, "the request body must be a JSON object")
        return body

    async def api_save(request: Request) -> Response:
        """Store settings as a variant, through explain_run as `tamx explain` would."""
        name = request.path_params["run"]
        # the largest save names every sample of the run, each an id of at most ID_MAX_LENGTH
        ids = await blocking(lambda: _read(store.run(name).sample_ids))
        body = await json_body(request, FORM_OVERHEAD + len(ids) * (ID_MAX_LENGTH + len('"",')))
        settings = settings_from(body)
        variant = body.get("name") or settings.variant_name()
        if variant == LIVE or not isinstance(variant, str):
            raise http_error(400, f"a saved variant needs a name other than {LIVE!r}")
        try:
            check_sample_id(variant)
        except SampleError as exc:
            raise http_error(400, f"variant names follow the rules of sample ids: {exc.problem}") from None
        samples = body.get("samples")
        if samples is not None and (not isinstance(samples, list) or not all(isinstance(s, str) for s in samples)):
            raise http_error(400, "samples must be a list of sample ids, or left out for all samples")
        for sample_id in samples or []:
            store.version(name, sample_id)  # 400 / 404 for bad or unknown ids
        path = store.run(name).url

        def save():
            try:
                return explain_run(path, settings, variant, samples, overwrite=False)
            except TamxError as exc:
                raise http_error(409, str(exc)) from None
            except OSError as exc:
                raise http_error(409, f"cannot write to {path} ({exc}); is the run read-only?") from None

        report = await blocking(save)
        body = {"variant": variant, "done": report.done, "skipped": report.skipped, "failed": report.failed}
        return JSONResponse(body, status_code=409 if report.failed else 200)

    async def api_generate(request: Request) -> Response:
        if generator is None:
            raise http_error(404, "this server has no model: start it with `tamx serve --model ID_OR_PATH`")
        length = request.headers.get("content-length")
        limit = config.max_upload_bytes
        # The HTTP parser reads exactly Content-Length bytes, so checking it bounds the body.
        if length is None or not length.isdigit():
            raise http_error(411, "send the upload with a Content-Length header (a browser form does)")
        if int(length) > limit + FORM_OVERHEAD:
            raise http_error(
                413, f"the upload is {int(length) / 1e6:.1f} MB; this server takes at most {limit / 1e6:.1f} MB"
            )
        from .model import read_upload  # no torch: validation only

        job_input = await read_upload(request, limit, generator)
        job = generator.submit(job_input)
        return JSONResponse(generator.status(job.id), status_code=202)

    async def api_job(request: Request) -> Response:
        if generator is None:
            raise http_error(404, "this server has no model, hence no generation jobs")
        status = generator.status(request.path_params["job"])
        if status is None:
            raise http_error(404, f"no generation job {request.path_params['job']!r}")
        return JSONResponse(status)

    routes = [
        Route("/", index),
        Route("/compare", compare),
        Route("/favicon.ico", favicon),
        Route("/api/config", api_config),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run}/samples", api_samples),
        Route("/api/runs/{run}/samples/{sample}", api_sample),
        Route("/api/runs/{run}/samples/{sample}/live", api_live),
        Route("/api/runs/{run}/samples/{sample}/figure.png", api_figure),
        Route("/api/runs/{run}/variants", api_save, methods=["POST"]),
        Route("/api/generate", api_generate, methods=["POST"]),
        Route("/api/jobs/{job}", api_job),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(_Guard, token=config.token)]
    if config.allowed_hosts:
        # DNS rebinding: a page of another site must not reach a loopback server through its own name
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _error_response})


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
    server = uvicorn.Server(uvicorn.Config(make_app(config), log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def new_token() -> str:
    return secrets.token_urlsafe(24)
