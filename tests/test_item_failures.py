"""How an item's failure reaches the client: as an error of its own, pinned on the item,
with the user's source in the remote traceback, never as the client's own exit or Ctrl-C."""

from __future__ import annotations

import functools
import linecache
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from scripts import run_script

import starburst
from starburst import serialize

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


def _remote_traceback(exc: BaseException) -> str:
    cause = exc.__cause__
    assert isinstance(cause, starburst.RemoteTraceback)
    return cause.text


def _shows_no_starburst_frame(text: str) -> bool:
    return str(Path(starburst.__file__).parent) not in text


def test_a_scripts_remote_traceback_shows_its_file_line_and_source(tmp_path: Path) -> None:
    done = run_script(
        tmp_path,
        """
        import starburst

        def halve(x):
            if x % 2:
                raise ValueError(f"odd input {x}")
            return x // 2

        if __name__ == "__main__":
            starburst.map(halve, range(4), workers=2, chunk_size=1)
        """,
    )
    assert done.returncode == 1
    remote = done.stderr.split("The above exception was the direct cause")[0]
    assert f'File "{tmp_path / "client.py"}", line 6, in halve' in remote, remote
    assert '    raise ValueError(f"odd input {x}")' in remote
    assert "<dynamic-code>" not in remote and _shows_no_starburst_frame(remote)


def test_a_notebook_cells_function_shows_the_cells_line_and_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """IPython registers each cell in ``linecache`` under a made-up name; no file exists, on
    the client or on the workers (started as fresh interpreters: nothing is inherited)."""
    monkeypatch.setenv("STARBURST_LOCAL_START", "spawn")
    cell_name = "<ipython-input-3-0123456789ab>"
    cell = "def from_a_cell(x):\n    y = x * 2\n    assert x != 2, f'no twos ({y})'\n    return y\n"
    monkeypatch.setitem(
        linecache.cache, cell_name, (len(cell), None, cell.splitlines(True), cell_name)
    )
    namespace = {"__name__": "__main__"}
    exec(compile(cell, cell_name, "exec"), namespace)

    results = starburst.map(namespace["from_a_cell"], range(4), workers=1, errors="return")
    assert results[:2] == [0, 2] and results[3] == 6
    remote = _remote_traceback(results[2])
    assert f'File "{cell_name}", line 3, in from_a_cell' in remote, remote
    assert "    assert x != 2, f'no twos ({y})'" in remote
    assert _shows_no_starburst_frame(remote)


def test_a_lambdas_remote_traceback_shows_its_line_and_no_starburst_frame() -> None:
    results = starburst.starmap(
        lambda a, b: a / b,
        [(1, 1), (1, 0)],
        workers=1,
        errors="return",
    )
    remote = _remote_traceback(results[1])
    assert f'File "{__file__}", line ' in remote and "lambda a, b: a / b" in remote, remote
    assert _shows_no_starburst_frame(remote)


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be shown")


class TwoArgumentError(Exception):
    """Pickles, but does not unpickle: ``args`` holds one value, ``__init__`` takes two."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


class LockHoldingError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class ExitsWhenPickledError(Exception):
    def __reduce__(self) -> tuple[object, ...]:
        sys.exit("pickling this exception ends the process")


def raise_unprintable(x: int) -> int:
    if x == 1:
        raise UnprintableError("hidden")
    return x


def raise_unsendable(x: int) -> int:
    if x == 1:
        raise TwoArgumentError("item", "one")
    if x == 2:
        raise LockHoldingError("item two")
    if x == 3:
        raise ExitsWhenPickledError("item three")
    return x


def test_an_exception_whose_str_raises_is_reported_as_itself_not_as_a_lost_worker() -> None:
    results = starburst.map(raise_unprintable, range(3), workers=1, errors="return", retries=0)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], UnprintableError)
    remote = _remote_traceback(results[1])
    assert "UnprintableError: <exception str() failed>" in remote
    assert "raise UnprintableError" in remote


def test_exceptions_that_do_not_travel_arrive_as_remote_errors_naming_their_type() -> None:
    results = starburst.map(raise_unsendable, range(4), workers=1, errors="return", retries=0)
    assert results[0] == 0
    unpicklable, unsendable, exits = results[1:]
    assert isinstance(unpicklable, starburst.RemoteError)
    assert unpicklable.type_name == f"{__name__}.TwoArgumentError"
    assert unpicklable.message == "item: one"
    assert isinstance(unsendable, starburst.RemoteError)
    assert unsendable.type_name == f"{__name__}.LockHoldingError"
    assert unsendable.message == "item two"
    assert "raise LockHoldingError" in _remote_traceback(unsendable)
    assert isinstance(exits, starburst.RemoteError)
    assert exits.type_name == f"{__name__}.ExitsWhenPickledError"


def thing_only_the_workers_import(folder: str, x: int) -> object:
    """Item 1's result is of a class from a module in ``folder``, which only the worker
    puts on its ``sys.path``."""
    if x != 1:
        return {"x": x}
    sys.path.append(folder)
    import only_on_the_workers  # type: ignore[import-not-found]

    return only_on_the_workers.Thing(x)


def _refuse_to_load(how: str) -> None:
    if how == "exit":
        sys.exit(3)
    raise ValueError("this result refuses to load")


class RefusesToLoad:
    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[object, ...]:
        return (_refuse_to_load, (self.how,))


def refusing_on_two(how: str, x: int) -> object:
    return [x, RefusesToLoad(how)] if x == 2 else x


@pytest.fixture
def worker_only_module(tmp_path: Path) -> Callable[[int], object]:
    (tmp_path / "only_on_the_workers.py").write_text(
        "class Thing:\n    def __init__(self, x):\n        self.x = x\n"
    )
    return functools.partial(thing_only_the_workers_import, str(tmp_path))


def test_a_result_of_a_class_only_the_worker_has_fails_only_its_item(
    worker_only_module: Callable[[int], object],
) -> None:
    results = starburst.map(worker_only_module, range(4), workers=1, chunk_size=4, errors="return")
    assert results[0] == {"x": 0} and results[2:] == [{"x": 2}, {"x": 3}]
    failed = results[1]
    assert isinstance(failed, starburst.ResultUnpicklingError)
    assert isinstance(failed, pickle.UnpicklingError)
    assert isinstance(failed, starburst.SerializationError)
    assert "the result of item 1 " in str(failed)
    assert "only_on_the_workers.Thing cannot be imported here" in str(failed)
    assert "No module named 'only_on_the_workers'" in str(failed)
    assert "only_on_the_workers" not in sys.modules


def test_with_errors_raise_an_unloadable_result_raises_with_the_others_kept(
    worker_only_module: Callable[[int], object],
) -> None:
    with pytest.raises(starburst.ResultUnpicklingError, match="result of item 1 ") as caught:
        starburst.map(worker_only_module, range(4), workers=1, chunk_size=4)
    partial = caught.value.starburst_results
    assert partial.done == {0: {"x": 0}, 2: {"x": 2}, 3: {"x": 3}}
    assert list(partial.failed) == [1]


@pytest.mark.parametrize(
    ("how", "raised"),
    [("raise", "ValueError: this result refuses to load"), ("exit", "SystemExit: 3")],
)
def test_a_result_whose_unpickling_fails_fails_only_its_item(how: str, raised: str) -> None:
    results = starburst.map(
        functools.partial(refusing_on_two, how), range(4), workers=1, chunk_size=4, errors="return"
    )
    assert results[:2] == [0, 1] and results[3] == 3
    failed = results[2]
    assert isinstance(failed, starburst.ResultUnpicklingError)
    assert f"rebuilding it with {__name__}._refuse_to_load raised {raised}" in str(failed)


def test_a_submitted_call_whose_result_exits_while_unpickled_resolves_its_future() -> None:
    with starburst.Executor(workers=1) as executor:
        future = executor.submit(refusing_on_two, "exit", 2)
        assert isinstance(future.exception(timeout=60), starburst.ResultUnpicklingError)
        assert executor.submit(abs, -2).result(timeout=60) == 2


def test_functions_of_one_cell_bring_their_lines_to_a_process_without_the_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that loads two functions of one cell (or file it cannot read) has both
    functions' lines, each at its own line number."""
    cell_name = "<ipython-input-7-fedcba987654>"
    cell = "def first(x):\n    return x + 1\n\n\ndef second(x):\n    return x + 2\n"
    namespace = {"__name__": "__main__"}
    monkeypatch.setitem(
        linecache.cache, cell_name, (len(cell), None, cell.splitlines(True), cell_name)
    )
    exec(compile(cell, cell_name, "exec"), namespace)
    payloads = [serialize.dumps(namespace[name], compress=False) for name in ("first", "second")]

    del linecache.cache[cell_name]  # as in a worker, which never ran the cell
    first, second = (serialize.loads(payload) for payload in payloads)
    assert (first(1), second(1)) == (2, 3)
    assert first.__code__.co_filename == cell_name
    assert linecache.getline(cell_name, 2) == "    return x + 1\n"
    assert linecache.getline(cell_name, 6) == "    return x + 2\n"


def _refuse_to_build(text: str) -> None:
    raise LookupError(text)


class BuiltOnlyHere:
    """An input the workers cannot unpickle: rebuilding it raises."""

    def __reduce__(self):
        return (_refuse_to_build, ("cannot build this on a worker",))


def test_an_item_that_cannot_be_unpickled_on_the_worker_fails_alone() -> None:
    # Before, every worker that read its chunk died loading it, and the call hung.
    items = [1, 2, BuiltOnlyHere(), 4]
    results = starburst.map(str, items, workers=1, errors="return", timeout=120)
    assert results[:2] == ["1", "2"] and results[3] == "4"
    assert isinstance(results[2], starburst.SerializationError)
    assert "could not be unpickled on the worker" in str(results[2])
    assert "LookupError: cannot build this on a worker" in str(results[2])
