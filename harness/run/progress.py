"""Progress display. The runner and learners see only ``task(description, total) -> advance`` and
``log(message)``, so the core and plugins do not depend on how progress is shown."""

from __future__ import annotations

import time
from typing import Callable

LOG_EVERY = 60.0  # seconds between a task's progress lines when stderr is not a terminal


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _progress_line(description: str, done: int, total: int | None, elapsed: float, stats: str) -> str:
    """"hebbian fc1.weight (fused step): 120/1000, 0:06:01 elapsed, about 0:44:07 left  norm_dev=0.02"."""
    if total:
        left = f", about {_clock(elapsed * (total - done) / done)} left" if 0 < done < total else ""
        head = f"{description}: {done}/{total}, {_clock(elapsed)} elapsed{left}"
    else:
        head = f"{description}: {done}, {_clock(elapsed)} elapsed"
    return f"{head}  {stats}" if stats else head


class SilentProgress:
    """No display: for tests and ``--quiet``."""

    def task(self, description: str, total: int | None) -> Callable[..., None]:
        def advance(n: int = 1, **stats) -> None:
            pass
        return advance

    def log(self, message: str) -> None:
        pass

    def __enter__(self) -> "SilentProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass


class RichProgress(SilentProgress):
    """Progress bars on stderr via rich; statistics passed to ``advance`` appear next to the bar.
    When stderr is not a terminal (``nohup harness run ... > log 2>&1 &``) rich draws nothing until the
    end, so each task prints a line instead, at most once every :data:`LOG_EVERY` seconds and when it
    completes: a log of a background run shows how far each training or attack has got."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = Console(stderr=True)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                  console=self.console, transient=False)

    def task(self, description: str, total: int | None) -> Callable[..., None]:
        task_id = self._progress.add_task(description, total=total, stats="")
        lines = not self.console.is_terminal
        started = last = time.monotonic()
        done = 0

        def advance(n: int = 1, **stats) -> None:
            nonlocal last, done
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
            self._progress.update(task_id, advance=n, **({"stats": text} if stats else {}))
            done += n
            now = time.monotonic()
            finished = total is not None and done >= total
            if lines and (finished or now - last >= LOG_EVERY):
                last = now
                self.console.print(_progress_line(description, done, total, now - started, text), highlight=False,
                                   soft_wrap=True)
        return advance

    def log(self, message: str) -> None:
        # a terminal wraps long lines itself; a file or a pipe gets each message on one line, as written
        self._progress.console.print(message, highlight=False, soft_wrap=not self.console.is_terminal)

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()
