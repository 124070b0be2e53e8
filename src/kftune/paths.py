"""Where kftune keeps things on disk.

``KFTUNE_HOME`` (default ``./.kftune`` in the working directory) holds caches that are safe to
delete: generated demo corpora, the tiny demo model, tokenised datasets. On a cluster it points at
the mounted cache volume (``/cache``), so trial pods share what one of them built.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("KFTUNE_HOME") or Path.cwd() / ".kftune")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_once(target: Path, build: Callable[[Path], object], marker: str = "README.md") -> Path:
    """Build a cache entry once, atomically: ``build(tmp_dir)`` then rename to ``target``.

    Concurrent processes (parallel trials) may race; the loser's identical copy is discarded.
    ``marker`` is a file ``build`` writes last: a half-built entry never counts as built.
    """
    if (target / marker).is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        with contextlib.suppress(OSError):  # another process won the race
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
