"""Device selection: ``auto`` picks CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations

import re

from harness.errors import HarnessError


def resolve_device(name: str):
    import torch

    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise HarnessError(f"--device {name}: torch sees no CUDA device here; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise HarnessError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device(name)
    raise HarnessError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
