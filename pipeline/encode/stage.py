"""The encode loop: samples in, one stored Sample each, resumable, failures collected per sample.

Under torchrun (WORLD_SIZE > 1) each rank takes a disjoint shard of the samples and writes
into the same store; rank 0 creates it, the others wait at a barrier.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tamx import RunInfo, create_run
from tamx.errors import DiskFullError, TamxError
from tamx.store import ROOT, is_url, objects_at

from ..files import writing
from ..outcomes import Outcome, StageReport
from ..ranks import barrier, rank_and_size, torchrun_group
from .adapters import Adapter, adapter_for
from .inputs import EncodeInput, InputError, read_manifest
from .record import (
    EncodeSettings,
    Prepared,
    build_sample,
    dtype_name,
    generate,
    max_positions,
    prepare_sample,
    resolve_settings,
    teacher_force,
)

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EncodeReport(StageReport):
    """What an encode run did: sample ids stored (done), skipped (already stored) and failed
    (id -> reason), and how long it took."""

    seconds: float = 0.0


def model_name(model_id: str) -> str:
    """How a run names its model: a hub id as it is, a local folder by its name only, so that no
    run, page or exported file carries a machine's path; the bundled toy by its short name
    `tamx-demo`, as `tamx demo` names it (so that their runs and exports mix)."""
    from ..demo import DEMO_MODEL, MODEL_DIR

    if not Path(model_id).exists():
        return model_id
    folder = Path(model_id).resolve()
    return DEMO_MODEL if folder == MODEL_DIR.resolve() else folder.name


def run_info(adapter: Adapter, model_id: str) -> RunInfo:
    """The run attributes of a model: id, revision, stored dtype and special-token roles."""
    config = adapter.model.config
    return RunInfo(
        model_id=model_id,
        model_revision=getattr(config, "_commit_hash", None),
        dtype=dtype_name(adapter.model.dtype),
        special_tokens=adapter.special_tokens(),
        extra={"family": adapter.family, "model_type": config.model_type},
    )


def as_inputs(inputs: str | os.PathLike | EncodeInput | Iterable[EncodeInput]) -> tuple[list[EncodeInput], dict]:
    """Samples from a manifest path, one EncodeInput, or a list of them; plus manifest lines that failed."""
    if isinstance(inputs, (str, os.PathLike)):
        return read_manifest(inputs)
    if isinstance(inputs, EncodeInput):
        return [inputs], {}
    return list(inputs), {}


def encode(
    model: torch.nn.Module,
    processor: Any,
    inputs: str | os.PathLike | EncodeInput | Sequence[EncodeInput],
    out: str | os.PathLike,
    *,
    model_id: str | None = None,
    settings: EncodeSettings | None = None,
    overwrite: bool = False,
    batch_size: int = 1,
    wrap: Callable[[Iterator[EncodeInput], int], Iterator[EncodeInput]] | None = None,
    extra: dict[str, Any] | None = None,
) -> EncodeReport:
    """Encode samples with an already loaded model into the run store `out`.

    `extra` adds run-wide notes to the run's `RunInfo.extra` (the demo's toy-model notice is
    shown on every page).

    Finished samples are skipped (resume) unless `overwrite`; a failing sample is recorded
    in the report and the others go on. Up to `batch_size` samples to generate for share one
    left-padded generate call (teacher-forced ones run alone). `wrap` may wrap the sample
    stream (a progress bar).
    """
    started = time.perf_counter()
    settings = settings or EncodeSettings()
    adapter = adapter_for(model, processor)
    settings = resolve_settings(adapter, settings)
    limit = max_positions(model.config)
    if limit is not None and settings.max_new_tokens > limit:
        raise TamxError(
            f"--max-new-tokens {settings.max_new_tokens} is more than the model's max_position_embeddings "
            f"({limit}): no answer can be that long; give at most {limit}"
        )
    model_id = model_name(model_id or getattr(model, "name_or_path", None) or "unknown")
    samples, failed = as_inputs(inputs)
    rank, world = rank_and_size()
    info = run_info(adapter, str(model_id))
    info.extra.update(extra or {})
    created = _new_run_folders(out) if rank == 0 else None
    with writing(f"the run {out}"):
        if rank == 0:
            create_run(out, info, exist_ok=True)
        barrier()
        run = create_run(out, info, exist_ok=True)
    try:
        report = _encode_samples(adapter, run, samples, failed, settings, str(model_id), overwrite, batch_size, wrap)
    except BaseException:
        if created is not None and world == 1:  # under torchrun other ranks may still be writing
            _discard_if_empty(run, created)
        raise
    barrier()
    if created is not None:
        _discard_if_empty(run, created)
    report.seconds = time.perf_counter() - started
    return report


def _new_run_folders(out: str | os.PathLike) -> list[Path] | None:
    """Before creating a run: the local folders that do not exist yet, innermost first ([] at a
    URL); None where a run is already there (it is never removed)."""
    objects = objects_at(out)
    if objects.exists(ROOT) or objects.exists("zarr.json"):
        return None
    if is_url(out):
        return []
    missing = []
    for folder in [Path(out), *Path(out).absolute().parents]:
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _discard_if_empty(run: Any, created: list[Path]) -> None:
    """Remove a run this encode created and stored no sample in (every sample failed, or none
    ran): its root object, then the folders it made. A run that existed before is never touched."""
    if [key for key, _ in run.objects.walk("")] != [ROOT]:
        return
    run.objects.delete(ROOT)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return
    log.info("removed %s: no sample was stored in it", run.url)


def _encode_samples(
    adapter: Adapter,
    run: Any,
    samples: list[EncodeInput],
    failed: dict,
    settings: EncodeSettings,
    model_id: str,
    overwrite: bool,
    batch_size: int,
    wrap: Callable[[Iterator[EncodeInput], int], Iterator[EncodeInput]] | None,
) -> EncodeReport:
    """This rank's shard of `samples`, skipped when stored (unless `overwrite`), else encoded in batches."""
    rank, world = rank_and_size()
    report = EncodeReport(failed=dict(failed) if rank == 0 else {})
    shard = samples[rank::world]
    stored = set(run.sample_ids())
    todo = []
    for sample in shard:
        if sample.id in stored and not overwrite:
            report.add(Outcome.skipped(sample.id))
        else:
            todo.append(sample)
    stream: Iterator[EncodeInput] = iter(todo)
    batch: list[EncodeInput] = []
    for sample in wrap(stream, len(todo)) if wrap else stream:
        batch.append(sample)
        if len(batch) >= batch_size:
            _encode_batch(adapter, run, batch, settings, str(model_id), {"rank": rank, "world_size": world}, report)
            batch = []
    if batch:
        _encode_batch(adapter, run, batch, settings, str(model_id), {"rank": rank, "world_size": world}, report)
    return report


ERRORS = (TamxError, ValueError, OSError, RuntimeError)


def _fail(report: EncodeReport, sample_id: str, exc: Exception) -> None:
    log.debug("sample %s failed", sample_id, exc_info=True)
    # the report shows the id beside the reason: an InputError's problem without its sample
    report.add(Outcome.failed(sample_id, exc.problem if isinstance(exc, InputError) else str(exc)))


def _encode_batch(
    adapter: Adapter,
    run: Any,
    batch: list[EncodeInput],
    settings: EncodeSettings,
    model_id: str,
    rank: dict[str, int],
    report: EncodeReport,
) -> None:
    """Prepare, run and store a batch; a failure is charged to its sample alone."""
    ready: list[Prepared] = []
    for sample in batch:
        try:
            ready.append(prepare_sample(adapter, sample, settings))
        except ERRORS as exc:
            _fail(report, sample.id, exc)
    to_generate = [p for p in ready if p.answer is None]
    produced = {}
    if len(to_generate) > 1:
        try:
            produced = {p.sample.id: o for p, o in zip(to_generate, generate(adapter, to_generate, settings))}
        except ERRORS as exc:
            log.info("batched generate failed (%s); running the batch one sample at a time", exc)
    for prepared in ready:
        sample_id = prepared.sample.id
        try:
            result = produced.get(sample_id)
            if result is None:
                if prepared.answer is not None:
                    result = teacher_force(adapter, prepared, settings)
                else:
                    (result,) = generate(adapter, [prepared], settings)
            record = build_sample(adapter, prepared, result, settings, model_id)
            record.meta["rank"] = rank
            with writing(f"sample {sample_id!r} into {run.path}"):
                run.write_sample(record, overwrite=True)
        except DiskFullError:
            raise  # every later sample would fail the same way: stop the run
        except ERRORS as exc:
            _fail(report, sample_id, exc)
            continue
        report.add(Outcome.done(sample_id))


def encode_path(
    model_id: str,
    inputs: str | os.PathLike | EncodeInput | Sequence[EncodeInput],
    out: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: str = "auto",
    settings: EncodeSettings | None = None,
    overwrite: bool = False,
    batch_size: int = 1,
    wrap: Callable[[Iterator[EncodeInput], int], Iterator[EncodeInput]] | None = None,
) -> EncodeReport:
    """Load `model_id` (an HF id or a local folder) and encode `inputs` into `out` (torchrun-aware)."""
    from ..demo import resolve_model
    from .hub import check_model
    from .loading import load_model, load_processor, resolve_device

    model_id = resolve_model(model_id)
    samples, failed = as_inputs(inputs)  # a bad manifest fails before the model loads
    if not samples:
        return EncodeReport(failed=failed)
    check_model(model_id)  # a typo fails here in one line, not after transformers' retries
    with torchrun_group(resolve_device(device)):
        model = load_model(model_id, device=device, dtype=dtype)
        processor = load_processor(model_id)
        name = model_name(model_id)
        report = encode(
            model,
            processor,
            samples,
            out,
            model_id=name,
            settings=settings,
            overwrite=overwrite,
            batch_size=batch_size,
            wrap=wrap,
        )
        if rank_and_size()[0] == 0:
            report.failed = {**failed, **report.failed}
        return report
