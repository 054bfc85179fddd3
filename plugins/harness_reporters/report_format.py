"""How the report and the leaderboard write numbers and names."""

from __future__ import annotations

from typing import Any

from harness_figures.gallery import format_T
from harness_figures.show import numeric, stage_history
from harness_reporters import reference as ref


def pct(value: float) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def interval(low: float, high: float, signed: bool = False) -> str:
    if low != low or high != high:
        return ""
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]" if signed else f"[{100 * low:.1f}, {100 * high:.1f}]"


def with_interval(value: float, low: float, high: float, signed: bool = False) -> str:
    """``57.8 [54.7, 60.8]`` (percent); ``+3.1 [+1.0, +5.2]`` for a difference."""
    number = f"{100 * value:+.1f}" if signed else pct(value)
    bounds = interval(low, high, signed)
    return f"{number} {bounds}" if bounds else number


def fmt_T(value: float) -> str:
    return "–" if value is None or value != value else format_T(float(value))


def thesis_name(key: str) -> str:
    return f"{key} ({ref.MODELS[key]})" if key in ref.MODELS else key


def last_train_acc(sidecar: dict[str, Any]) -> float | None:
    """train_acc of the last epoch of the last stage that records it."""
    value = None
    for stage in sidecar.get("stages") or []:
        recorded = [e["train_acc"] for e in stage_history(stage) if numeric(e.get("train_acc"))]
        if recorded:
            value = float(recorded[-1])
    return value


def figure_name(*parts: Any) -> str:
    return "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts)
