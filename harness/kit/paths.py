"""Where the harness keeps files of its own: one root under the user's cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache(name: str) -> Path:
    """``$XDG_CACHE_HOME/robustness-harness/NAME`` (default ``~/.cache``): the default data root
    (``data``) and the default model cache (``models``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "robustness-harness" / name
