"""Helpers for learners that train one layer in isolation (Hebbian rules and similar)."""

from __future__ import annotations


class _Captured(Exception):
    """Raised by the pre-hook to stop the forward pass once the layer's input is known."""


def layer_inputs(model, param_name: str, x, batch_size: int = 1000):
    """What the layer owning ``param_name`` receives when ``model`` sees ``x``: the model's own
    preprocessing (normalisation, flattening, earlier frozen layers) applied, nothing after it."""
    path = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return module_inputs(model, path, x, batch_size)


def input_of(model, module, x):
    """What ``module`` (a submodule of ``model``) receives when ``model`` sees the batch ``x``, with
    its autograd history (the forward pass stops there); None when the pass never reaches it."""
    captured = []

    def hook(_module, args):
        captured.append(args[0])
        raise _Captured

    handle = module.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured[0] if captured else None


def module_inputs(model, module_name: str, x, batch_size: int = 1000):
    """What submodule ``module_name`` receives when ``model`` sees ``x`` (the forward pass stops there)."""
    import torch

    module = model.get_submodule(module_name)
    with torch.no_grad():
        return torch.cat([input_of(model, module, x[start:start + batch_size]).detach()
                          for start in range(0, len(x), batch_size)])
