"""Which process writes a live reply, and telling when it has ended (``chat/holder.py``)."""

from __future__ import annotations

import subprocess
import sys

from chatbot.chat import holder


def holder_of_a_process_that_ended() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "from chatbot.chat import holder; print(holder.this_process())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out and out != "None", out
    return out


def test_a_process_that_runs_is_not_gone_and_one_that_ended_is():
    me = holder.this_process()
    assert me is not None
    assert not holder.gone(me)
    assert holder.gone(holder_of_a_process_that_ended())


def test_a_reused_pid_is_told_apart_by_its_start_time():
    place, pid, started = holder.this_process().rsplit("/", 2)
    assert holder.gone(f"{place}/{pid}/{int(started) + 1}")


def test_writers_elsewhere_or_unknown_are_never_called_gone():
    ended = holder_of_a_process_that_ended()
    _, pid, started = ended.rsplit("/", 2)
    # another machine (or container: another pid namespace) can't be judged from here: the lease decides
    assert not holder.gone(f"another-boot:pid:[1]/{pid}/{started}")
    for unknown in (None, "", "garbage", "a/b/c", "/1/2"):
        assert not holder.gone(unknown)
