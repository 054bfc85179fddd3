"""A background run's log (stderr not a terminal) shows how far each task has got."""

from __future__ import annotations

import io

from harness.run import progress as progress_module
from harness.run.progress import RichProgress, _progress_line


def test_lines_replace_bars_when_stderr_is_not_a_terminal(monkeypatch):
    display = RichProgress()
    stream = io.StringIO()
    display.console.file = stream                         # a file, as under nohup ... > log
    assert not display.console.is_terminal
    clock = iter([0.0, 1.0, 30.0, 61.0, 62.0, 200.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with display:
        advance = display.task("hebbian fc1.weight (fused step)", 4)
        advance(norm_dev=0.5)       # t = 1: under a minute since the start, no line
        advance(norm_dev=0.25)      # t = 30: still none
        advance(norm_dev=0.125)     # t = 61: a line, with the time left from the pace so far
        advance(norm_dev=0.0625)    # t = 62: finished, a line
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("hebbian")]
    assert lines[0] == "hebbian fc1.weight (fused step): 3/4, 0:01:01 elapsed, about 0:00:20 left  norm_dev=0.125"
    assert lines[1] == "hebbian fc1.weight (fused step): 4/4, 0:01:02 elapsed  norm_dev=0.0625"


def test_progress_line_without_a_total():
    assert _progress_line("attack", 7, None, 3725.0, "") == "attack: 7, 1:02:05 elapsed"
