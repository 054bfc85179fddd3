"""The machine's own floor: seconds for the bare matrix products an epoch needs, nothing else.

Imported by bench/hebbian.py and bench/backprop.py. Each product ``[m, k] @ [k, n]`` is timed on
fixed operands as ``A @ Bt.T``, ``Bt @ A.T`` (its transpose) and ``A @ B``, the fastest counts;
bf16 only where the CPU multiplies it natively (AMX or AVX512-BF16).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def bf16_native() -> bool:
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def product_seconds(m: int, k: int, n: int, dtype: torch.dtype, calls: int) -> float:
    """Best seconds per call of an [m, k] @ [k, n] product over ``calls`` calls, either orientation."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    bt = torch.randn(n, k, generator=generator).to(dtype)    # as weights [H, D] and inputs [B, D] lie
    b = bt.T.contiguous()
    best = float("inf")
    for run in (lambda: a @ bt.T, lambda: bt @ a.T, lambda: a @ b):  # C, C.T, C from a copied operand
        for _ in range(10):
            run()
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def epoch_floor(products: list[tuple[int, int, int]], steps: int, dtype: torch.dtype, calls: int = 200) -> float:
    """Seconds per epoch of ``steps`` minibatches, each needing the given [m, k] @ [k, n] products."""
    return steps * sum(product_seconds(m, k, n, dtype, calls) for m, k, n in products)


def floors(products: list[tuple[int, int, int]], steps: int, calls: int = 200) -> dict[str, float]:
    """{"fp32": seconds, "bf16": seconds (where native)} per epoch."""
    found = {"fp32": epoch_floor(products, steps, torch.float32, calls)}
    if bf16_native():
        found["bf16"] = epoch_floor(products, steps, torch.bfloat16, calls)
    return found


def repeat(measure: Callable[[], float], runs: int = 3) -> list[float]:
    """``runs`` measurements of one figure (seconds), each from a fresh call."""
    return [measure() for _ in range(runs)]


def spread(values: list[float]) -> str:
    """"min 1.23 / median 1.25 s" for a figure measured several times."""
    return f"min {min(values):6.2f} / median {statistics.median(values):6.2f} s"


def ratio(learner: list[float], floor: list[float]) -> str:
    """learner / floor as the median of each over the median of each, and min over min."""
    return (f"{statistics.median(learner) / statistics.median(floor):.2f} "
            f"(median of {len(learner)}; min / min {min(learner) / min(floor):.2f})")
