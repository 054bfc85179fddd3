"""robustness-harness: a plugin-based benchmark of adversarial robustness.

Plugin authors need two names from here: ``hookimpl`` to mark hook implementations, and the
registration records in :mod:`harness.api`. Users evaluating a model of their own need
``harness.eval_model`` (docs: README, "Evaluate your own model").
"""

import pluggy

# No side effects here: this package is imported wherever its pytest plugin (harness.testing) is
# loaded. The math environment is set where harness's own processes begin (harness/kit/threads.py).

__version__ = "0.1.0"

PROJECT = "harness"  # pluggy project name and entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "__version__", "PROJECT", "eval_model"]


def __getattr__(name: str):
    """``harness.eval_model`` (harness/own_model.py), imported on first use so that ``import
    harness`` stays light."""
    if name == "eval_model":
        from harness.own_model import eval_model

        return eval_model
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
