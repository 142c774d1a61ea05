"""Reading a request: explain settings from a query or a JSON body, bodies bounded in size,
JSON parsed strictly; and the error every refusal raises (`http_error`)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tamx import ExplainSettings, defaults
from tamx.errors import TamxError
from tamx.methods import default_filter
from tamx.report import page_json

FORM_OVERHEAD = 64 << 10  # multipart boundaries and the text fields, on top of the files
# A JSON body is an object of settings, at most one list (of sample ids) deep; deeper is refused
# before parsing (a parser recurses once per level).
JSON_DEPTH = 2


def http_error(status: int, message: str) -> HTTPException:
    """The refusal of a request: its HTTP status and the one-line message the page shows."""
    return HTTPException(status_code=status, detail=message)


def settings_from(query: dict[str, Any]) -> ExplainSettings:
    """ExplainSettings from query or JSON fields eci, filter, kernel_size, method and layer
    (defaults: the paper's TAM at the last layer, tamx.defaults, as `tamx explain`'s; a baseline
    method's filter defaults to none, as there), checked as `tamx explain` checks its options."""
    given = query.get("kernel_size", defaults.KERNEL_SIZE)
    # an integer, as `--kernel-size` takes: no bool, no 5.5 cut to 5, no 1e999
    if isinstance(given, str) and given.strip().lstrip("+-").isdigit():
        given = _integer(given)
    if isinstance(given, bool) or not isinstance(given, int):
        raise http_error(400, f"kernel_size must be an odd integer, got {given!r}")
    layer = query.get("layer", -1)
    if isinstance(layer, str) and layer.strip().lstrip("+-").isdigit():
        layer = _integer(layer)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise http_error(400, f"layer must be a layer counted from the last (-1, -2, ...), got {layer!r}")
    method = str(query.get("method", "tam"))
    try:
        return ExplainSettings(
            eci=str(query.get("eci", defaults.ECI)),
            filter=str(query.get("filter", default_filter(method))),
            kernel_size=given,
            method=method,
            layer=layer,
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
