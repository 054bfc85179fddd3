"""Checks on a model or on images that come from outside the harness (``harness eval``, the
``external`` model plugin, :func:`harness.eval_model`): the contract is [N, *input_shape] images in
[0, 1] in, [N, classes] logits out. Each failure is one :class:`HarnessError` line saying what is
wrong and how to fix it."""

from __future__ import annotations

from typing import Any

from harness.api import DataInfo
from harness.errors import HarnessError

PROBE = 2  # images in the probe batch: 2, so a model that drops the batch dimension is caught


def _shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_output(module: Any, info: DataInfo, what: str) -> None:
    """Run ``module`` (already in eval mode) on a batch of random [0, 1] images shaped like the
    dataset's: it must return a float tensor [N, info.num_classes] of finite logits."""
    import torch

    try:
        parameter = next(iter(module.parameters()), None)
    except Exception:  # noqa: BLE001 - a TorchScript or odd module: probe on the CPU in float32
        parameter = None
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    probe = torch.rand(PROBE, *info.input_shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    shape = _shape(probe.shape)
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is one line
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise HarnessError(f"{what}: fails on a batch of images shaped {shape} in [0, 1] "
                           f"({type(exc).__name__}: {message[:200]}); the harness feeds [N, "
                           f"{', '.join(map(str, info.input_shape))}] images: flatten or reshape inside the "
                           f"model") from None
    if not isinstance(out, torch.Tensor):
        raise HarnessError(f"{what}: returns {type(out).__name__}, expected a tensor of logits [N, "
                           f"{info.num_classes}]; return only the logits from forward()")
    if tuple(out.shape) != (PROBE, info.num_classes):
        raise HarnessError(f"{what}: output for a batch shaped {shape} is {_shape(out.shape)}, expected logits "
                           f"[{PROBE}, {info.num_classes}] (one score per class for each image); check the "
                           f"model's last layer and that it keeps the batch dimension")
    if not out.is_floating_point():
        raise HarnessError(f"{what}: returns {out.dtype} scores, expected float logits")
    if not bool(torch.isfinite(out).all()):
        raise HarnessError(f"{what}: returns NaN or infinite logits for a batch of random images in [0, 1]; "
                           f"check the weights (a diverged training saves NaN) and any division or log in "
                           f"forward()")


def check_images(x: Any, y: Any, info_classes: int | None = None, what: str = "data") -> None:
    """Images must be a float tensor in [0, 1] (normalisation belongs inside the model, so attacks
    measure eps in pixel units) and labels integers, one per image."""
    import torch

    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise HarnessError(f"{what}: expected (x, y) torch tensors, got ({type(x).__name__}, {type(y).__name__})")
    if not x.is_floating_point() or x.dim() < 2:
        raise HarnessError(f"{what}: x must be float images [N, ...], got {x.dtype} {_shape(x.shape)}")
    if y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.dtype == torch.bool:
        raise HarnessError(f"{what}: y must hold one integer label per image ({len(x)}), got {y.dtype} "
                           f"{_shape(y.shape)}")
    if len(x) == 0:
        raise HarnessError(f"{what}: no images")
    low, high = float(x.min()), float(x.max())
    if not (low >= 0.0 and high <= 1.0):
        raise HarnessError(f"{what}: pixel values span [{low:.3g}, {high:.3g}], expected [0, 1]: pass images "
                           f"before normalisation and put the normalisation inside the model (eps is measured "
                           f"on [0, 1] pixels)")
    if info_classes is not None and (int(y.min()) < 0 or int(y.max()) >= info_classes):
        raise HarnessError(f"{what}: labels span [{int(y.min())}, {int(y.max())}], expected 0 to "
                           f"{info_classes - 1}")
