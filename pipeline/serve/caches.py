"""What the server keeps in memory: the opened runs with a few loaded samples (`Runs`),
recomputed map variants (`MapCache`) and the rows of the list page (`EntryCache`)."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.exceptions import HTTPException

from tamx import Run, Sample, open_run
from tamx.errors import SampleError, TamxError
from tamx.records import check_sample_id

from .inputs import http_error


class MapCache:
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


class Runs:
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
            sample = read_store(lambda: self.run(name).sample(sample_id))
            self._samples[key] = sample
            while len(self._samples) > self._kept:
                self._samples.popitem(last=False)
            return sample


def read_store(load: Callable[[], Any]) -> Any:
    """Run a store read, turning damage or a concurrent write into a 409 that says so."""
    try:
        return load()
    except (TamxError, OSError) as exc:
        raise http_error(
            409,
            f"{exc} (if `tamx explain` or `tamx encode` is writing this run right now, retry in a moment)",
        ) from None


class EntryCache:
    """The list page's row of every sample (`tamx.report.index_entry`: thumbnails, turns and
    answer), built once per stored version of the sample; the least recently used dropped first."""

    def __init__(self, store: Runs, size: int = 1024) -> None:
        self.store = store
        self.size = size
        self._rows: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, sample_id: str, build: Callable[[str, Run, str], dict[str, Any]]) -> dict[str, Any]:
        """The row of one sample (blocking: call from a worker thread)."""
        key = (name, sample_id, self.store.version(name, sample_id))
        with self._lock:
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        row = read_store(lambda: build(name, self.store.run(name), sample_id))
        with self._lock:
            self._rows[key] = row
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return row
