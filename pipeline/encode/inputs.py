"""What encode reads: samples as HF chat messages (from a manifest or inline options) and their media.

A manifest is JSONL, one sample a line: {"id": ..., "messages": [...], "answer": optional}.
Media items are {"type": "image", "image": PATH} or {"type": "video", "video": PATH}
("path" is accepted too); relative paths resolve against the manifest's folder. The
explained answer is `answer`, else a final assistant turn, else generated.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tamx import defaults
from tamx.errors import TamxError
from tamx.records import ID_MAX_LENGTH, Media, check_sample_id, name_problem


class InputError(TamxError):
    """A sample's inputs are unusable; the message names the sample and what to fix."""

    def __init__(self, sample_id: str, problem: str) -> None:
        self.sample_id = sample_id
        self.problem = problem
        super().__init__(f"sample {sample_id!r}: {problem}")

    def __reduce__(self):
        return type(self), (self.sample_id, self.problem)


@dataclass
class EncodeInput:
    """One sample to encode: chat messages (without the explained answer) and the answer, if given."""

    id: str
    messages: list[dict[str, Any]]
    answer: str | None = None
    base_dir: Path = field(default_factory=Path)


@dataclass
class MediaItem:
    """A loaded image (RGB [H, W, 3] uint8) or sampled video (frames [T, H, W, 3], source indices)."""

    kind: str
    path: str
    pixels: np.ndarray
    frame_indices: tuple[int, ...] = ()
    fps: float | None = None
    source_frames: int | None = None


def _content_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def media_kind(item: dict[str, Any]) -> str | None:
    """'image', 'video' or None for a chat content item."""
    kind = item.get("type")
    if kind in ("image", "video"):
        return kind
    for key in ("image", "video"):
        if key in item:
            return key
    return None


def media_path(item: dict[str, Any]) -> str | None:
    kind = media_kind(item)
    value = item.get(kind) if kind else None
    if value is None:
        value = item.get("path") or item.get("url")
    return value if isinstance(value, str) else None


DEFAULT_SAMPLE_ID = "sample"


def default_sample_id(images: tuple[str, ...] = (), video: str | None = None) -> str:
    """The id of an inline sample left unnamed: the first image's (else the video's) file name
    without its extension, other characters than letters, digits, '_', '.' and '-' replaced by '-'
    (`photo 1.jpg` -> `photo-1`); "sample" when that is no valid id."""
    source = images[0] if images else video
    if not source:
        return DEFAULT_SAMPLE_ID
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "-", Path(source).stem)
    stem = re.sub(r"^[.\-]+", "", stem)[:ID_MAX_LENGTH].rstrip(".-")
    return stem if stem and name_problem(stem, portable=True) is None else DEFAULT_SAMPLE_ID


def inline_input(
    images: tuple[str, ...] = (),
    video: str | None = None,
    prompt: str = "",
    answer: str | None = None,
    sample_id: str | None = None,
) -> EncodeInput:
    """Build a one-turn sample from --image (repeatable), --video and --prompt (`sample_id`
    None: `default_sample_id`, from the first file's name)."""
    sample_id = sample_id or default_sample_id(images, video)
    content: list[dict[str, Any]] = [{"type": "image", "image": str(Path(p).resolve())} for p in images]
    if video:
        content.append({"type": "video", "video": str(Path(video).resolve())})
    content.append({"type": "text", "text": prompt})
    return EncodeInput(id=sample_id, messages=[{"role": "user", "content": content}], answer=answer)


CHAT_ROLES = ("system", "user", "assistant")


def _type_name(value: Any) -> str:
    """The JSON type of a value, as a message names it."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


def messages_problem(messages: Any) -> str | None:
    """What is wrong with the JSON types of chat `messages` (None: nothing), naming the place:
    a non-empty list of {"role", "content"} turns, content a string or a list of items, each
    item an object whose text is a string and whose image or video names a path."""
    if not isinstance(messages, list) or not messages:
        return f"messages must be a non-empty list of chat turns, not {_type_name(messages)}"
    for t, turn in enumerate(messages):
        where = f"messages[{t}]"
        if not isinstance(turn, dict):
            return f'{where} must be an object {{"role": ..., "content": ...}}, not {_type_name(turn)}'
        if turn.get("role") not in CHAT_ROLES:
            return f"{where}.role is {turn.get('role')!r}; use one of {', '.join(CHAT_ROLES)}"
        content = turn.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"{where}.content must be a string or a list of items, not {_type_name(content)}"
        for i, item in enumerate(content):
            at = f"{where}.content[{i}]"
            if not isinstance(item, dict):
                return f'{at} must be an object such as {{"type": "text", "text": ...}}, not {_type_name(item)}'
            kind = item.get("type")
            if kind is not None and not isinstance(kind, str):
                return f"{at}.type must be a string, not {_type_name(kind)}"
            if media_kind(item) is not None:
                if media_path(item) is None:
                    article = "an" if media_kind(item) == "image" else "a"
                    return f"{at} is {article} {media_kind(item)} without a path: give it as a string"
            elif kind in (None, "text") and not isinstance(item.get("text", ""), str):
                return f"{at}.text must be a string, not {_type_name(item['text'])}"
    return None


def _manifest_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TamxError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TamxError(
            f"manifest {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def read_manifest(path: str | Path) -> tuple[list[EncodeInput], dict[str, str]]:
    """Parse a JSONL manifest; returns the samples and, by line or id, the lines that failed.

    A line fails alone (not JSON, not a record, an id that cannot name a folder, values of
    the wrong JSON type); a file that cannot be read or is not UTF-8 raises TamxError.
    """
    path = Path(path)
    samples: list[EncodeInput] = []
    failed: dict[str, str] = {}
    seen: dict[str, str] = {}  # lower-cased id -> id: ids differing in case collide on macOS and Windows
    lines = _manifest_text(path).splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            failed[where] = f"not valid JSON ({exc})"
            continue
        if not isinstance(record, dict) or "messages" not in record:
            failed[where] = 'each line needs {"id": ..., "messages": [...]}'
            continue
        raw_id = record.get("id", f"line{number}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            failed[where] = f"the id must be a string or an integer, not {_type_name(raw_id)}"
            continue
        sample_id = str(raw_id)
        try:
            check_sample_id(sample_id, portable=True)
        except TamxError as exc:
            failed[where] = str(exc)
            continue
        problem = messages_problem(record["messages"])
        answer = record.get("answer")
        if problem is None and answer is not None and not isinstance(answer, str):
            problem = f"answer must be a string (or left out), not {_type_name(answer)}"
        if problem is not None:
            failed[sample_id if sample_id not in failed else where] = problem
            continue
        twin = seen.get(sample_id.lower())
        if twin is not None:
            failed[where] = (
                f"sample id {sample_id!r} appears twice in the manifest"
                if twin == sample_id
                else f"sample id {sample_id!r} differs from {twin!r} only in case; they would share a folder "
                "on macOS and Windows: rename one"
            )
            continue
        seen[sample_id.lower()] = sample_id
        samples.append(
            EncodeInput(id=sample_id, messages=record["messages"], answer=answer, base_dir=path.parent.resolve())
        )
    if not samples and not failed:
        raise TamxError(f'manifest {path} holds no records; write one {{"id", "messages"}} object a line')
    return samples, failed


def split_answer(sample: EncodeInput) -> tuple[list[dict[str, Any]], str | None]:
    """The messages before the explained answer, and the answer text (None: generate it).

    A final assistant turn is the answer unless `answer` is given; the prompt must end
    with a user turn that carries text.
    """
    problem = messages_problem(sample.messages)
    if problem is not None:
        raise InputError(sample.id, problem)
    if sample.answer is not None and not isinstance(sample.answer, str):
        raise InputError(sample.id, f"answer must be a string (or None), not {_type_name(sample.answer)}")
    messages = copy.deepcopy(sample.messages)
    answer = sample.answer
    if messages[-1].get("role") == "assistant":
        last = messages.pop()
        if answer is None:
            answer = "".join(i.get("text", "") for i in _content_items(last) if i.get("type", "text") == "text")
    if not messages or messages[-1].get("role") != "user":
        raise InputError(sample.id, "the conversation must end with a user turn (then, optionally, the answer)")
    last_text = "".join(i.get("text", "") for i in _content_items(messages[-1]) if media_kind(i) is None)
    if not last_text.strip():
        raise InputError(sample.id, "the prompt is empty: the last user turn needs some text")
    if answer is not None and not answer.strip():
        raise InputError(sample.id, "the given answer is empty: give some text or leave it out to generate one")
    for message in messages:
        if isinstance(message.get("content"), str):
            message["content"] = [{"type": "text", "text": message["content"]}]
        for item in message["content"]:
            if media_kind(item) is not None:
                item_path = media_path(item)
                if item_path is None:
                    raise InputError(sample.id, f"media item {item} has no path")
                resolved = str((sample.base_dir / item_path).resolve())
                kind = media_kind(item)
                item.clear()
                item.update({"type": kind, kind: resolved})
    if not any(media_kind(i) for m in messages for i in m["content"]):
        raise InputError(sample.id, "the prompt has no image or video: give at least one to explain")
    return messages, answer


def portable_messages(messages: list[dict[str, Any]], base_dir: Path) -> list[dict[str, Any]]:
    """The messages as a run stores them: media paths relative to `base_dir` (the manifest's
    folder, or the working folder for inline inputs), so no run or exported file carries the
    machine's absolute paths. The media themselves are stored in the run."""
    base = Path(base_dir).resolve()
    stored = copy.deepcopy(messages)
    for message in stored:
        for item in message["content"]:
            kind = media_kind(item)
            if kind is not None:
                item[kind] = os.path.relpath(item[kind], base)
    return stored


def load_image(sample_id: str, path: str) -> MediaItem:
    if not Path(path).is_file():
        raise InputError(sample_id, f"image file {path} does not exist")
    pixels = cv2.imread(path, cv2.IMREAD_COLOR)
    if pixels is None:
        raise InputError(sample_id, f"cannot read image {path}: not an image format OpenCV decodes")
    return MediaItem(kind="image", path=path, pixels=cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


def load_video(sample_id: str, path: str, num_frames: int, multiple: int = 1) -> MediaItem:
    """Sample `num_frames` frames evenly (rounded up to a multiple of `multiple`)."""
    if not Path(path).is_file():
        raise InputError(sample_id, f"video file {path} does not exist")
    capture = cv2.VideoCapture(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        frames = []
        if total > 0:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise InputError(sample_id, f"cannot read video {path}: no frames could be decoded")
    count = min(num_frames, len(frames))
    count = max(multiple, -(-count // multiple) * multiple)
    indices = np.linspace(0, len(frames) - 1, count).round().astype(int)
    pixels = np.stack([cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in indices])
    return MediaItem(
        kind="video",
        path=path,
        pixels=pixels,
        frame_indices=tuple(int(i) for i in indices),
        fps=fps,
        source_frames=len(frames),
    )


def load_media(
    sample_id: str, messages: list[dict[str, Any]], num_frames: int = defaults.VIDEO_FRAMES, multiple: int = 1
) -> list[MediaItem]:
    """Load every image and video of the messages, in order of appearance."""
    items = []
    for message in messages:
        for item in message["content"]:
            kind = media_kind(item)
            if kind == "image":
                items.append(load_image(sample_id, item["image"]))
            elif kind == "video":
                items.append(load_video(sample_id, item["video"], num_frames, multiple))
    return items


def _encoded(pixels: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:
        raise TamxError(f"OpenCV could not encode a {ext} image")
    return data.tobytes()


def media_records(items: list[MediaItem]) -> list[Media]:
    """The store's Media: original JPEG/PNG bytes of images (else PNG), JPEG of each video frame."""
    records = []
    for index, item in enumerate(items):
        if item.kind == "image":
            data = Path(item.path).read_bytes()
            if data[:3] == b"\xff\xd8\xff":
                records.append(Media(item=index, kind="image", mime="image/jpeg", data=data))
            elif data[:8] == b"\x89PNG\r\n\x1a\n":
                records.append(Media(item=index, kind="image", mime="image/png", data=data))
            else:
                records.append(Media(item=index, kind="image", mime="image/png", data=_encoded(item.pixels, ".png")))
        else:
            for frame, pixels in zip(item.frame_indices, item.pixels):
                records.append(
                    Media(item=index, kind="video-frame", mime="image/jpeg", data=_encoded(pixels, ".jpg"), frame=frame)
                )
    return records
