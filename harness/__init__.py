"""robustness-harness: a plugin-based benchmark of adversarial robustness.

Plugin authors need two names from here: ``hookimpl`` to mark hook implementations, and the
registration records in :mod:`harness.api`.
"""

import pluggy

__version__ = "0.1.0"

PROJECT = "harness"  # pluggy project name and entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "__version__", "PROJECT"]
