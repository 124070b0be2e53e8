"""Where kftune keeps things on disk.

``KFTUNE_HOME`` (default ``./.kftune`` in the working directory) holds caches that are safe to
delete: generated demo corpora, the tiny demo model, tokenised datasets. On a cluster it points at
the mounted cache volume (``/cache``), so trial pods share what one of them built.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("KFTUNE_HOME") or Path.cwd() / ".kftune")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
