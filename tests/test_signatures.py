"""Every front end shows its options: ``inspect.signature`` and ``help()`` name each one with
its type and default, and an unknown keyword is refused naming the options there are."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc

import pytest

import starburst
from starburst.options import RunOptions

WORKERS = ["workers", "cpu", "memory", "backend", "spot", "gpus", "instance_types", "arch"]
RUN = ["chunk_size", "errors", "retries", "retry_exceptions", "timeout", "seed", "strict"]
COST = ["max_cost", "cost_alert"]

FRONT_ENDS = {
    starburst.map: [*WORKERS, *RUN, "progress", *COST, "return_run"],
    starburst.starmap: [*WORKERS, *RUN, "progress", *COST, "return_run"],
    starburst.imap: [*WORKERS, *RUN, "progress", *COST, "return_run"],
    starburst.imap_unordered: [*WORKERS, *RUN, "progress", *COST, "return_run"],
    starburst.Cluster.map: [*RUN, "progress"],
    starburst.Cluster.starmap: [*RUN, "progress"],
    starburst.Cluster.imap: [*RUN, "progress"],
    starburst.Cluster.imap_unordered: [*RUN, "progress"],
    starburst.Session.map: RUN,
    starburst.Session.starmap: RUN,
    starburst.Cluster: [*WORKERS, "progress", *COST],
    starburst.Executor: [*WORKERS, "max_workers", "progress", *COST],
    starburst.session: [*WORKERS, "ttl", *COST],
}


@pytest.mark.parametrize("front_end", FRONT_ENDS, ids=lambda f: f.__qualname__)
def test_each_front_end_lists_its_options_with_type_and_default(front_end) -> None:
    parameters = inspect.signature(front_end).parameters
    assert not [p for p in parameters.values() if p.kind == p.VAR_KEYWORD]
    options = FRONT_ENDS[front_end]
    assert set(options) <= parameters.keys()
    for name in options:
        assert parameters[name].annotation is not inspect.Parameter.empty, name
        assert parameters[name].default is not inspect.Parameter.empty, name
    shown = pydoc.render_doc(front_end, renderer=pydoc.plaintext)
    for name in options:
        assert f"{name}: " in shown, name


def test_the_defaults_are_those_the_options_take_when_left_out() -> None:
    run_defaults = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    assert run_defaults == {
        "chunk_size": None, "errors": "raise", "retries": 2, "retry_exceptions": False,
        "timeout": None, "seed": None, "strict": True,
    }  # fmt: skip
    cluster = inspect.signature(starburst.Cluster).parameters
    for front_end in (starburst.map, starburst.imap, starburst.Cluster.map):
        parameters = inspect.signature(front_end).parameters
        for name in parameters.keys() & run_defaults.keys():
            assert parameters[name].default == run_defaults[name], name
        for name in parameters.keys() & cluster.keys():
            assert parameters[name].default == cluster[name].default, name
    assert inspect.signature(starburst.map).parameters["return_run"].default is False


@pytest.mark.parametrize(
    "call",
    [
        lambda: starburst.imap(abs, [1], chunksize=2),
        lambda: starburst.starmap(abs, [(1,)], chunksize=2),
        lambda: starburst.Cluster(workers=1).map(abs, [1], chunksize=2),
    ],
)
def test_an_unknown_keyword_names_the_options_there_are(call) -> None:
    with pytest.raises(TypeError) as raised:
        call()
    message = str(raised.value)
    assert "unexpected keyword argument 'chunksize' (did you mean chunk_size?)" in message
    assert "its options are" in message and "retry_exceptions" in message
