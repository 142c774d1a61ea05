"""The server's pages and JSON API, one method per route (`Handlers.routes`).

Explain runs in worker threads, never on the event loop; recomputed maps are cached (and
identical requests in flight share one computation). Nothing is written to a run unless the
user saves a setting as a variant, which goes through `tamx.pipeline.explain.explain_run`, as
`tamx explain` does.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tamx import ExplainSettings, Maps, Run, Sample, defaults, explain_sample
from tamx.eci import ECI_WEIGHTINGS
from tamx.errors import SampleError, TamxError
from tamx.explain import complete_maps
from tamx.faithfulness import stored_records
from tamx.figures import FigureStyle, save_figure, token_figure
from tamx.filters import FILTERS
from tamx.methods import variant_label
from tamx.page import PAGE_VERSION, PageData
from tamx.records import ID_MAX_LENGTH, check_sample_id
from tamx.report import (
    display_name,
    empty_page_data,
    index_entry,
    json_ready,
    page_data,
    page_json,
    sample_page,
    template,
)

from ..explain import check_kernel_fits, explain_run
from .auth import SERVE_CSP
from .caches import EntryCache, MapCache, Runs, read_store
from .config import ServeConfig
from .inputs import FORM_OVERHEAD, http_error, json_response, parse_json, read_body, settings_from

STATIC = Path(__file__).parent / "static"
LIVE = "live"  # the variant name of maps recomputed for the page's settings, never stored
LIST_PAGE = "/samples"  # the runs and their samples, as the report's index lists them
FIGURE_DPI = FigureStyle.dpi  # a downloaded figure is the one `tamx render --png` draws
# matplotlib's rcParams (the figures' fonts and sizes) are process-wide: one figure at a time
_FIGURE_LOCK = threading.Lock()


async def error_response(request: Request, exc: Exception) -> Response:
    """Every refusal as JSON {status, message}; Starlette's own 404 and 405 say what to do."""
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":
        message = f"no page or API route {request.url.path!r}; the page is at / and the API under /api"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path!r}"
    return JSONResponse({"status": exc.status_code, "message": message}, status_code=exc.status_code)


def list_row(run_name: str, run: Run, sample_id: str) -> dict[str, Any]:
    """One sample's row of the list page: the report index's row, linked to its live page."""
    sample = run.sample(sample_id)
    stored = run.variants(sample_id)
    shown = "tam" if "tam" in stored else next(iter(stored), None)
    maps = None if shown is None else run.maps(sample_id, shown)
    href = "/?" + urlencode({"run": run_name, "sample": sample_id})
    return {**index_entry(sample, href, maps), "run": run_name, "variants": stored}


class Handlers:
    """The routes of one server over `config`: its runs, caches and worker-thread limit."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.generator = config.generator
        self.store = Runs(config.runs)
        self.cache = MapCache(config.cache_size)
        self.entries = EntryCache(self.store)
        self.limiter = anyio.CapacityLimiter(config.explain_threads)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index),
            Route(LIST_PAGE, self.list_page),
            Route("/compare", self.compare),
            Route("/favicon.ico", self.favicon),
            Route("/api/config", self.api_config),
            Route("/api/runs", self.api_runs),
            Route("/api/runs/{run}/samples", self.api_samples),
            Route("/api/runs/{run}/samples/{sample}", self.api_sample),
            Route("/api/runs/{run}/samples/{sample}/live", self.api_live),
            Route("/api/runs/{run}/samples/{sample}/figure.png", self.api_figure),
            Route("/api/runs/{run}/variants", self.api_save, methods=["POST"]),
            Route("/api/generate", self.api_generate, methods=["POST"]),
            Route("/api/jobs/{job}", self.api_job),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    async def blocking(self, fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    def sample_params(self, request: Request) -> tuple[str, str]:
        return request.path_params["run"], request.path_params["sample"]

    def explained(self, name: str, sample_id: str, settings: ExplainSettings, variant: str) -> tuple[Sample, Maps]:
        """The sample and its maps for settings (blocking); a window wider than every grid is a 400,
        as `tamx explain` refuses it (its cost grows as k^4)."""
        try:
            check_kernel_fits(self.store.run(name), [sample_id], settings)
        except TamxError as exc:
            raise http_error(400, str(exc)) from None
        sample = self.store.sample(name, sample_id)
        try:  # a layer or method the sample's encode did not record: say which option records it
            return sample, explain_sample(sample, settings, variant)
        except TamxError as exc:
            raise http_error(400, str(exc)) from None

    def stored_page(self, name: str, sample_id: str) -> PageData:
        sample = self.store.sample(name, sample_id)
        run = self.store.run(name)
        variants = read_store(
            lambda: {v: complete_maps(sample, run.maps(sample_id, v)) for v in run.variants(sample_id)}
        )
        records = read_store(lambda: stored_records(run, sample_id, list(variants)))
        return page_data(sample, variants, run.info, faithfulness=records)

    def first_sample(self) -> tuple[str, str] | None:
        for name, run in self.store.existing().items():
            ids = run.sample_ids()
            if ids:
                return name, ids[0]
        return None

    # ------------------------------------------------------------------ pages
    def opening_page(self, name: str | None, sample_id: str | None) -> PageData:
        """The asked sample; a run's first sample; the first sample of any run; or an empty page."""
        if name is not None and sample_id is None:
            ids = read_store(self.store.run(name).sample_ids)
            sample_id = ids[0] if ids else None
        if name is None or sample_id is None:
            first = self.first_sample()
            if first is None:
                return empty_page_data(self.generator.model_id if self.generator else None)
            name, sample_id = first
        return self.stored_page(name, sample_id)

    async def index(self, request: Request) -> Response:
        query = request.query_params
        data = await self.blocking(lambda: self.opening_page(query.get("run"), query.get("sample")))
        html = sample_page(
            data, index_href=LIST_PAGE, csp=SERVE_CSP, scripts=["/static/serve.js"], styles=["/static/serve.css"]
        )
        return HTMLResponse(html)

    async def list_page(self, request: Request) -> Response:
        """The runs and their samples (thumbnails, turns, answers, a filter box), as the report's
        index lists them; each row opens its sample's live page."""

        def listing() -> tuple[list[str], list[dict[str, Any]], list[str]]:
            runs, rows, variants = [], [], set()
            for name, run in self.store.existing().items():
                ids = read_store(run.sample_ids)
                runs.append(f"{name}: {display_name(run.info.model_id)}, {len(ids)} sample(s)")
                for sample_id in ids:
                    try:
                        row = self.entries.get(name, sample_id, list_row)
                        rows.append(row)
                        variants.update(row["variants"])
                    except HTTPException:
                        continue  # being rewritten right now: listed again on the next load
            return runs, rows, sorted(variants)

        runs, rows, variants = await self.blocking(listing)
        title = "tamx serve · runs and samples"
        notice = (
            None if runs else "No runs yet" + (": generate a sample on the live page (/)." if self.generator else ".")
        )
        html = template("index.html.j2").render(
            **json_ready(
                {
                    "title": title,
                    "models": [" · ".join(runs)] if runs else [],  # one line, not "a vs b"
                    "notice": notice,
                    "entries": rows,
                    "variants": variants,
                    "score_columns": [],
                }
            )
        )
        return HTMLResponse(html)

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; there is none

    async def compare(self, request: Request) -> Response:
        html = (STATIC / "compare.html").read_text()
        return HTMLResponse(html)

    # ------------------------------------------------------------------ API: reading
    async def api_config(self, request: Request) -> Response:
        return JSONResponse(
            {
                "eci_modes": list(ECI_WEIGHTINGS),
                "filters": list(FILTERS),
                "defaults": {"eci": defaults.ECI, "filter": defaults.FILTER, "kernel_size": defaults.KERNEL_SIZE},
                "live_variant": LIVE,
                "page_version": PAGE_VERSION,
                "list_page": LIST_PAGE,
                "model": self.generator.describe() if self.generator else None,
                "max_upload_bytes": self.config.max_upload_bytes,
            }
        )

    async def api_runs(self, request: Request) -> Response:
        def listing() -> list[dict[str, Any]]:
            return [
                {"id": name, "model": run.info.model_id, "samples": len(run.sample_ids())}  # no machine path
                for name, run in self.store.existing().items()
            ]

        return json_response(await self.blocking(listing))

    async def api_samples(self, request: Request) -> Response:
        name = request.path_params["run"]

        def listing() -> list[dict[str, Any]]:
            run = self.store.run(name)
            rows = []
            for sample_id in run.sample_ids():
                try:
                    summary = run.sample_summary(sample_id)
                    answer = run.sample_attrs(sample_id).get("meta", {}).get("answer")
                except (TamxError, OSError, KeyError, ValueError):
                    continue  # being rewritten right now: listed again on the next refresh
                rows.append({**summary, "answer": answer})
            return rows

        return json_response(await self.blocking(listing))

    async def api_sample(self, request: Request) -> Response:
        name, sample_id = self.sample_params(request)
        return json_response(await self.blocking(lambda: self.stored_page(name, sample_id)))

    async def api_live(self, request: Request) -> Response:
        """The maps of one sample recomputed for the settings in the query: {settings, name, label,
        view} (name: the variant `tamx explain` would store them as; label: its method and layer,
        "TAM, layer -8", `tamx.methods.variant_label`; the view is headed "live: " + label)."""
        name, sample_id = self.sample_params(request)
        settings = settings_from(dict(request.query_params))
        key = (name, sample_id, self.store.version(name, sample_id), json.dumps(settings.to_json(), sort_keys=True))

        def compute() -> bytes:
            sample, maps = self.explained(name, sample_id, settings, LIVE)
            bare = dataclasses.replace(sample, media=[])  # the view needs no images
            view = page_data(bare, {LIVE: maps}, self.store.run(name).info)["variants"][LIVE]
            stored = ExplainSettings.from_json(maps.settings)  # gradient: the layer it was recorded at
            label = variant_label(maps.settings)
            view["label"] = f"{LIVE}: {label}"  # the column's heading: "live: TAM, layer -8"
            body = {"settings": maps.settings, "name": stored.variant_name(), "label": label, "view": view}
            return page_json(body).encode()

        body = await self.cache.get(key, compute, self.limiter)
        return Response(body, media_type="application/json")

    async def api_figure(self, request: Request) -> Response:
        """A PNG of one answer token's figure: a stored variant (?variant=) or live settings."""
        name, sample_id = self.sample_params(request)
        query = dict(request.query_params)
        try:
            index = int(query.get("index", 0))
        except ValueError:
            raise http_error(400, f"index must be an answer-token number, got {query.get('index')!r}") from None
        variant = query.get("variant")
        settings = None if variant and variant != LIVE else settings_from(query)

        def draw() -> bytes:
            if settings is None:
                sample, run = self.store.sample(name, sample_id), self.store.run(name)
                if variant not in run.variants(sample_id):
                    raise http_error(404, f"sample {sample_id!r} has no stored variant {variant!r}")
                maps = read_store(lambda: run.maps(sample_id, variant))
            else:
                sample, maps = self.explained(name, sample_id, settings, settings.variant_name())
            n = len(sample.answer_positions)
            if not 0 <= index < n:
                raise http_error(400, f"sample {sample_id!r} has answer tokens 0..{n - 1}, not {index}")
            png = io.BytesIO()
            with _FIGURE_LOCK:
                save_figure(token_figure(sample, maps, index, FigureStyle(dpi=FIGURE_DPI)), png, "png", FIGURE_DPI)
            return png.getvalue()

        png = await self.blocking(draw)
        filename = f"{sample_id}-{variant if settings is None else settings.variant_name()}-token{index:03d}.png"
        return Response(
            png, media_type="image/png", headers={"content-disposition": f'attachment; filename="{filename}"'}
        )

    # ------------------------------------------------------------------ API: writing
    async def json_body(self, request: Request, limit: int) -> dict[str, Any]:
        body = parse_json(await read_body(request, limit))
        if not isinstance(body, dict):
            raise http_error(400, "the request body must be a JSON object")
        return body

    async def api_save(self, request: Request) -> Response:
        """Store settings as a variant, through explain_run as `tamx explain` would."""
        name = request.path_params["run"]
        # the largest save names every sample of the run, each an id of at most ID_MAX_LENGTH
        ids = await self.blocking(lambda: read_store(self.store.run(name).sample_ids))
        body = await self.json_body(request, FORM_OVERHEAD + len(ids) * (ID_MAX_LENGTH + len('"",')))
        settings = settings_from(body)
        # unnamed: the settings' name, as `tamx explain` gives it (gradient: with its recorded layer)
        variant = body.get("name") or None
        if variant is not None:
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
            self.store.version(name, sample_id)  # 400 / 404 for bad or unknown ids
        path = self.store.run(name).url

        def save():
            try:
                return explain_run(path, settings, variant, samples, overwrite=False)
            except TamxError as exc:
                raise http_error(409, str(exc)) from None
            except OSError as exc:
                raise http_error(409, f"cannot write to {path} ({exc}); is the run read-only?") from None

        report = await self.blocking(save)
        body = {"variant": report.variant, "done": report.done, "skipped": report.skipped, "failed": report.failed}
        return JSONResponse(body, status_code=409 if report.failed else 200)

    async def api_generate(self, request: Request) -> Response:
        if self.generator is None:
            raise http_error(404, "this server has no model: start it with `tamx serve --model ID_OR_PATH`")
        length = request.headers.get("content-length")
        limit = self.config.max_upload_bytes
        # The HTTP parser reads exactly Content-Length bytes, so checking it bounds the body.
        if length is None or not length.isdigit():
            raise http_error(411, "send the upload with a Content-Length header (a browser form does)")
        if int(length) > limit + FORM_OVERHEAD:
            raise http_error(
                413, f"the upload is {int(length) / 1e6:.1f} MB; this server takes at most {limit / 1e6:.1f} MB"
            )
        from .model import read_upload  # no torch: validation only

        job_input = await read_upload(request, limit, self.generator)
        job = self.generator.submit(job_input)
        return JSONResponse(self.generator.status(job.id), status_code=202)

    async def api_job(self, request: Request) -> Response:
        if self.generator is None:
            raise http_error(404, "this server has no model, hence no generation jobs")
        status = self.generator.status(request.path_params["job"])
        if status is None:
            raise http_error(404, f"no generation job {request.path_params['job']!r}")
        return JSONResponse(status)
