"""Progress display. The runner and learners see only ``task(description, total) -> advance`` and
``log(message)``, so the core and plugins do not depend on how progress is shown."""

from __future__ import annotations

from typing import Callable


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
    """Progress bars on stderr via rich; statistics passed to ``advance`` appear next to the bar."""

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

        def advance(n: int = 1, **stats) -> None:
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
            self._progress.update(task_id, advance=n, **({"stats": text} if stats else {}))
        return advance

    def log(self, message: str) -> None:
        # a terminal wraps long lines itself; a file or a pipe gets each message on one line, as written
        self._progress.console.print(message, highlight=False, soft_wrap=not self.console.is_terminal)

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()
