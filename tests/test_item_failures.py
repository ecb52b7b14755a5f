"""How an item's failure reaches the client: as an error of its own, pinned on the item,
with the user's source in the remote traceback, never as the client's own exit or Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts import run_script

import starburst

pytestmark = pytest.mark.usefixtures("no_stray_workers")


def test_sys_exit_in_the_function_fails_its_item_instead_of_ending_the_client(
    tmp_path: Path,
) -> None:
    done = run_script(
        tmp_path,
        """
        import sys
        import starburst

        def leave_on_three(x):
            if x == 3:
                sys.exit(0)
            return x

        if __name__ == "__main__":
            print(starburst.map(leave_on_three, range(6), workers=2))
        """,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()
    assert any(line.startswith("starburst.errors.RemoteSystemExit:") for line in last)
    assert "item 3 (input: 3) raised SystemExit(0)" in done.stderr


def test_keyboard_interrupt_in_the_function_is_an_item_failure_not_a_ctrl_c(
    tmp_path: Path,
) -> None:
    done = run_script(
        tmp_path,
        """
        import starburst

        def interrupted_on_two(x):
            if x != 2:
                return x
            raise KeyboardInterrupt("from the function")

        if __name__ == "__main__":
            results = starburst.map(interrupted_on_two, range(4), workers=2, errors="return")
            failed = results[2]
            print(results[:2], results[3:], type(failed).__name__, failed.original_args)
            try:
                starburst.map(interrupted_on_two, range(4), workers=2)
            except KeyboardInterrupt:
                print("taken for a Ctrl-C")
            except starburst.RemoteKeyboardInterrupt as exc:
                print("item failed:", exc)
        """,
    )
    assert done.returncode == 0, done.stderr
    returned, raised = done.stdout.strip().splitlines()
    assert returned == "[0, 1] [3] RemoteKeyboardInterrupt ('from the function',)"
    assert (
        raised.startswith("item failed:") and "item 2 (input: 2) raised KeyboardInterrupt" in raised
    )


def exit_with_the_item(x: int) -> int:
    if x == 1:
        raise SystemExit(x + 2)
    return x


def test_a_returned_system_exit_keeps_its_code() -> None:
    results = starburst.map(exit_with_the_item, range(3), workers=1, errors="return")
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], starburst.RemoteSystemExit) and results[1].code == 3
