"""edgeskin.progress: plain lines with count, rate and time left where stderr is not a terminal."""

from __future__ import annotations

import time

from edgeskin.progress import Lines, _clock, progress


def test_plain_lines_report_count_rate_and_time_left(capsys):
    def slow(n):
        for i in range(n):
            time.sleep(0.01)
            yield i

    bar = Lines(slow(20), "epoch 1/3", total=20, unit="batch", every_s=0.05)
    bar.set_postfix(loss="1.234")
    assert list(bar) == list(range(20))
    assert len(bar.lines) >= 3  # several progress lines, then the closing one
    first, last = bar.lines[0], bar.lines[-1]
    assert first.startswith("epoch 1/3: ") and "/20 batch (" in first and "batch/s" in first and "left" in first
    assert "loss=1.234" in first
    assert last.startswith("epoch 1/3: 20/20 batch (100%)") and " in " in last
    assert capsys.readouterr().err.splitlines() == bar.lines  # what was printed, one line each


def test_a_short_loop_prints_nothing_and_pytest_is_not_a_terminal(capsys):
    assert list(progress(range(5), "decode")) == list(range(5))  # stderr is captured: not a TTY
    assert capsys.readouterr().err == ""
    assert list(progress(range(3), "x", enabled=False)) == [0, 1, 2]


def test_clock():
    assert (_clock(5), _clock(125), _clock(3725)) == ("5s", "2m05s", "1h02m")
