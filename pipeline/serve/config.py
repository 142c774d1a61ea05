"""What a server shows (`ServeConfig`) and the names of its runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_UPLOAD_BYTES = 64 << 20


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
