"""Model mode of `tamx serve`: validate uploads, then generate one sample at a time through the
encode stage's public API, explain it and record it into the output run.

Uploads are saved under `<out>-uploads/<sample id>/` with names this server chooses (the
client's file names are never used as paths), so the stored messages point at real files.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import cv2
import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from tamx import ExplainSettings, open_run
from tamx.errors import SampleError, TamxError
from tamx.records import check_sample_id

from ..explain import explain_run
from .inputs import http_error

log = logging.getLogger(__name__)

MAX_FILES = 8
MAX_PROMPT_CHARS = 8000
VIDEO_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (8, b"AVI "))  # mp4 / mov, webm / mkv, avi


@dataclass
class Upload:
    """One generation request, validated: media bytes with the extension to save them under."""

    sample_id: str
    prompt: str
    answer: str | None
    images: list[tuple[bytes, str]] = field(default_factory=list)
    video: tuple[bytes, str] | None = None


def image_extension(data: bytes) -> str | None:
    """'.png' / '.jpg' for images OpenCV decodes (others are re-encoded as PNG), None otherwise."""
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        return None
    return ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"


def video_extension(data: bytes) -> str | None:
    for offset, magic in VIDEO_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return {b"ftyp": ".mp4", b"\x1a\x45\xdf\xa3": ".webm", b"AVI ": ".avi"}[magic]
    return None


def video_decodes(data: bytes, ext: str) -> bool:
    """Whether OpenCV reads a first frame of the video (written aside to a temporary file)."""
    with tempfile.TemporaryDirectory(prefix="tamx-serve-") as folder:
        path = Path(folder) / f"upload{ext}"
        path.write_bytes(data)
        capture = cv2.VideoCapture(str(path))
        try:
            return capture.isOpened() and capture.read()[0]
        finally:
            capture.release()


def new_sample_id() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"upload-{stamp}-{uuid.uuid4().hex[:4]}"


async def read_upload(request: Request, limit: int, generator: Generator) -> Upload:
    """Parse and check a multipart generation request: files, prompt, answer, id."""
    form = await request.form(max_files=MAX_FILES, max_fields=16, max_part_size=limit)
    prompt = form.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise http_error(400, "type a prompt: the form field 'prompt' is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise http_error(400, f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are taken")
    answer = form.get("answer")
    answer = answer if isinstance(answer, str) and answer.strip() else None
    sample_id = form.get("id")
    sample_id = sample_id.strip() if isinstance(sample_id, str) and sample_id.strip() else new_sample_id()
    try:
        check_sample_id(sample_id)
    except SampleError as exc:
        raise http_error(400, f"sample id {sample_id!r}: {exc.problem}") from None
    generator.check_new_id(sample_id)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise http_error(400, "upload one or more images, or a video (form field 'files')")
    upload = Upload(sample_id=sample_id, prompt=prompt, answer=answer)
    total = 0
    for number, item in enumerate(files, 1):
        data = await item.read()
        total += len(data)
        if total > limit:
            raise http_error(413, f"the files add up to more than {limit / 1e6:.1f} MB, the most this server takes")
        shown = repr(item.filename or f"file {number}")
        if not data:
            raise http_error(400, f"{shown} is empty")
        image = image_extension(data)
        if image is not None:
            upload.images.append((data, image))
            continue
        video = video_extension(data)
        if video is None:
            raise http_error(415, f"{shown} is neither an image OpenCV decodes nor a video (mp4, mov, webm, avi)")
        if upload.video is not None:
            raise http_error(400, "upload at most one video per sample (with any number of images)")
        if not await anyio.to_thread.run_sync(video_decodes, data, video):
            raise http_error(415, f"{shown} looks like a video but OpenCV cannot decode a frame of it")
        upload.video = (data, video)
    return upload


@dataclass
class Job:
    id: str
    upload: Upload
    state: str = "queued"  # queued, running, done, failed
    error: str | None = None


class Generator:
    """One loaded model, one generation at a time; later requests wait in line."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_id: str,
        out: str | Path,
        settings: Any = None,
        variants: Sequence[tuple[str, ExplainSettings]] = (("tam", ExplainSettings()),),
    ) -> None:
        self.model, self.processor, self.model_id = model, processor, model_id
        self.out = Path(out)
        self.uploads = self.out.parent / f"{self.out.name}-uploads"
        self.settings = settings
        self.variants = list(variants)
        self.run_name = self.out.name  # set by make_app to the name the run is served under
        self._jobs: dict[str, Job] = {}
        self._line: list[str] = []  # job ids not finished, in order; the first one runs
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="tamx-generate")

    @classmethod
    def load(cls, model_id: str, out: str | Path, device: str = "auto", dtype: str = "auto", **options) -> Generator:
        """Load a model and its processor through the encode stage (imports torch)."""
        from tamx.pipeline.encode import load_model, load_processor
        from tamx.pipeline.encode.stage import model_name

        name = model_name(model_id)
        return cls(load_model(model_id, device=device, dtype=dtype), load_processor(model_id), name, out, **options)

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "run": self.run_name, "max_files": MAX_FILES}

    def _stored(self, sample_id: str) -> bool:
        try:
            return sample_id in open_run(self.out)
        except TamxError:  # no run yet: nothing stored
            return False

    def check_new_id(self, sample_id: str) -> None:
        with self._lock:
            taken = any(self._jobs[j].upload.sample_id == sample_id for j in self._line)
        if taken or self._stored(sample_id):
            raise http_error(409, f"sample {sample_id!r} is already in {self.out} or in line; choose another id")

    def submit(self, upload: Upload) -> Job:
        job = Job(id=uuid.uuid4().hex[:12], upload=upload)
        with self._lock:
            self._jobs[job.id] = job
            self._line.append(job.id)
        self._worker.submit(self._run, job)
        return job

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            ahead = self._line.index(job_id) if job_id in self._line else 0
        return {
            "id": job.id,
            "state": job.state,
            "ahead": ahead,  # generations before this one (the running one included)
            "run": self.run_name,
            "sample": job.upload.sample_id,
            "error": job.error,
        }

    def _save_media(self, upload: Upload) -> tuple[list[str], str | None]:
        folder = self.uploads / upload.sample_id
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        images = []
        for k, (data, ext) in enumerate(upload.images):
            path = folder / f"image-{k}{ext}"
            path.write_bytes(data)
            images.append(str(path))
        video = None
        if upload.video is not None:
            data, ext = upload.video
            path = folder / f"video{ext}"
            path.write_bytes(data)
            video = str(path)
        return images, video

    def _run(self, job: Job) -> None:
        job.state = "running"
        upload = job.upload
        try:
            from tamx.pipeline.encode import encode, inline_input

            images, video = self._save_media(upload)
            sample = inline_input(tuple(images), video, upload.prompt, upload.answer, upload.sample_id)
            report = encode(
                self.model, self.processor, sample, self.out, model_id=self.model_id, settings=self.settings
            )
            if report.failed:
                raise TamxError(report.failed.get(upload.sample_id) or "; ".join(report.failed.values()))
            for name, settings in self.variants:
                explained = explain_run(self.out, settings, name, [upload.sample_id])
                if explained.failed:
                    raise TamxError(explained.failed[upload.sample_id])
            job.state = "done"
        except ImportError as exc:
            job.state, job.error = "failed", f"generating needs the [encode] extra (torch, transformers): {exc}"
        except (TamxError, OSError, ValueError, RuntimeError) as exc:
            log.info("generation %s failed", job.id, exc_info=True)
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # the worker thread's boundary: the job must end, and say why
            log.exception("generation %s failed unexpectedly", job.id)
            job.state, job.error = "failed", f"unexpected {type(exc).__name__}: {exc} (see the server log)"
        finally:
            with self._lock:
                self._line.remove(job.id)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
