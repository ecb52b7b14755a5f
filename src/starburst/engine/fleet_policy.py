"""The fleet policy: what happens when a worker stops, written once for every session.

The attached client's monitor (``driver.py``) and a detached session's supervisor
(``supervisor.py``) keep a session's workers alive by these rules. Each is a pure decision over
what the backend reports (``WorkerInfo``), the control record's roster and ledger, times and
counts; the callers do the I/O (describe, stop, launch, write records) and end every failure
in one place of their own (``Driver._give_up``, the supervisor step's record edit):

1. which workers stopped (``stopped_workers``), or hang (``hung_workers``), and why, for the
   claims they held (``attempt_cause``): a spot interruption, or a stop we asked for, uses up
   no attempt;
2. whose chunks go back, and which deaths an item in isolation is blamed for (``chunks_back``);
   what each stop says about the workers' start (``judge_stop``);
3. how many replacements to launch (``launch_count``): the missing workers, as many as the cost
   cap and the launch budget (``LaunchBudget``) allow; launches that fall short back off
   (``LaunchTrouble``);
4. when to give up: a worker that could not start, workers that keep stopping (attached:
   ``FruitlessExits`` in a row; detached: the ``LaunchBudget``, ``stall_reason``), a launch
   that starts none (``judge_shortfall``), or the cost cap (``cap_reached``).

Where the two callers differ, the difference is a parameter or a separate rule, and says why.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..backends.base import LaunchShortfall, WorkerInfo
from ..cost.billing import workers_affordable
from .claims import Claim, stop_cause

#: The backend's fault for a worker the provider took back (a spot interruption).
INTERRUPTED = "interrupted"
#: The backend's fault for a worker that never ran its code (bad image, no permission).
FAILED_TO_START = "failed_to_start"


def ledger_stop(info: WorkerInfo) -> dict[str, object]:
    """What the ledger keeps of how a worker stopped, for a run's report (``reporting/``):
    the platform's fault (``interrupted``, ``out_of_memory``, ``failed_to_start``), its
    reason and exit code, and when it passed the platform's steps before it ran
    (``platform_steps``), where known."""
    how = {"fault": info.fault, "reason": info.reason, "exit_code": info.exit_code,
           "steps": platform_steps(info) or None}  # fmt: skip
    return {key: value for key, value in how.items() if value is not None}


def platform_steps(info: WorkerInfo) -> dict[str, float]:
    """When the platform began each step of a worker's start, where it says: ``created``
    (the launch accepted: provisioning), ``pull_started`` (pulling the image),
    ``pull_stopped`` (starting the container), ``started`` (its code runs). None from a
    backend that tells no step before the start (local processes)."""
    if info.created_at is None and info.pull_started_at is None:
        return {}
    steps = {"created": info.created_at, "pull_started": info.pull_started_at,
             "pull_stopped": info.pull_stopped_at, "started": info.started_at}  # fmt: skip
    return {step: at for step, at in steps.items() if at is not None}


#: Detached: a session launches at most this many workers per worker it asked for, in all.
MAX_LAUNCHES_PER_WORKER = 4
#: Attached: workers that stop without completing any item, in a row, before giving up.
MAX_FRUITLESS_EXITS = 3
#: After launches have started fewer workers than wanted for this long, the user is told once.
LAUNCH_NOTICE_SECONDS = 60.0
#: With no worker running after launches failed for this long, the call fails (LaunchError).
LAUNCH_GIVE_UP_SECONDS = 300.0
#: The pause before asking again after a launch short of capacity doubles up to the second.
RELAUNCH_PAUSES = (1.0, 30.0)


# 1. Which workers stopped, and why -------------------------------------------------------------


@dataclass(frozen=True)
class ShowUp:
    """When a worker the backend does not list counts as lost: ``seconds`` after its launch
    (``launched``: worker id -> time.time() of its launch, from the ledger; 0 if unknown)."""

    seconds: float
    launched: Mapping[str, float]
    now: float

    def overdue(self, worker_id: str) -> bool:
        return self.now - self.launched.get(worker_id, 0.0) > self.seconds


def stopped_workers(
    watched: Iterable[str], infos: Mapping[str, WorkerInfo], show_up: ShowUp | None = None
) -> list[WorkerInfo]:
    """The ``watched`` workers that stopped: those the backend reports stopped, and, with
    ``show_up``, those it does not list that are overdue (as a stopped info whose reason is
    ``"vanished"``).

    The detached supervisor finds the session's workers (``Fleet.find``: a new one may not be
    listed yet, hence ``show_up``); the attached client describes the workers it launched by
    id, and a backend describes every id it is asked about, so it passes no ``show_up``.
    """
    stopped = []
    for worker in watched:
        info = infos.get(worker)
        if info is None:
            if show_up is not None and show_up.overdue(worker):
                stopped.append(WorkerInfo(worker, "stopped", reason="vanished"))
        elif info.state == "stopped":
            stopped.append(info)
    return stopped


def hung_workers(
    workers: Iterable[str], beats: Mapping[str, tuple[float, bool]], now: float, lease: float
) -> dict[str, str]:
    """Those of ``workers`` whose processes all wrote no heartbeat for longer than a lease
    (``beats``: worker id -> last heartbeat, whether every process exited; a worker that
    wrote none yet is starting, not hung), each with the cause its claims are given."""
    hung = {}
    for worker in workers:
        beat, exited = beats.get(worker, (now, True))
        if not exited and now - beat > lease:
            hung[worker] = (
                f"worker {worker} stopped answering (no heartbeat for {now - beat:.0f} s, "
                f"over its {lease:g} s lease) and was stopped"
            )
    return hung


def attempt_cause(
    info: WorkerInfo,
    memory_mib: int | None,
    log_tail: Callable[[str], str] | None = None,
    *,
    hung: str | None = None,
    recalled: bool = False,
) -> str | None:
    """How a stopped worker stopped, for the claims it held (``end_lease``), or ``None`` when
    its stop uses up no attempt: a spot interruption is the provider's doing, a ``recalled``
    worker (stopped to hand back a failed run's items) ours.

    ``hung`` is the cause of a worker stopped for its silence (``hung_workers``). The attached
    client passes ``log_tail`` (worker id -> its log's end), which the cause quotes; a
    detached supervisor step reads no logs.
    """
    if info.fault == INTERRUPTED or recalled:
        return None
    if hung is not None:
        return hung
    return stop_cause(info, memory_mib, log_tail(info.worker_id) if log_tail else "")


def stop_times(
    stopped: Iterable[str],
    infos: Mapping[str, WorkerInfo],
    beats: Mapping[str, tuple[float, bool]],
    now: float,
) -> dict[str, float]:
    """When each stopped worker stopped: its own last heartbeat when it wrote that it exited
    (what ``engine/status.py`` counts the cost to, so that a session's cost does not move
    once its workers have stopped; a backend may report only when it noticed the exit), else
    as the backend says, else its last heartbeat (a supervisor step may come long after: the
    cost must not grow in between), else ``now``."""
    times = {}
    for worker in stopped:
        info = infos.get(worker)
        reported = info.stopped_at if info is not None else None
        beat, exited = beats.get(worker, (now, False))
        times[worker] = beat if exited else reported or beat
    return times


# 2. Whose chunks go back, and what a stop says ------------------------------------------------


@dataclass(frozen=True)
class ChunksBack:
    """The chunks whose leases the stopped workers held, now offered to the others."""

    requeued: dict[str, dict[str, str]]  # run id -> chunk (as text) -> the worker that held it
    pinned: set[str]  # workers that died running a chunk in isolation: an item's death

    @property
    def any(self) -> bool:
        return any(self.requeued.values())


def chunks_back(ended: Mapping[str, Mapping[str, Claim]]) -> ChunksBack:
    """What ending the stopped workers' leases gave back (``ended``: run id -> chunk -> the
    claim its lease had). A worker that died running a chunk in isolation died of an item,
    whose attempts bound such deaths: they do not count against the workers' start."""
    requeued = {run: {chunk: c.holder for chunk, c in e.items()} for run, e in ended.items()}
    pinned = {claim.holder for e in ended.values() for claim in e.values() if claim.isolate}
    return ChunksBack(requeued, pinned)


class Judgement(enum.Enum):
    """What a worker's stop while work remains says about the workers' start."""

    EXCUSED = "excused"  # it used up no attempt, or hung: not its start's fault
    COULD_NOT_START = "could not start"  # more workers would fail the same way
    BLAMED = "blamed on an item"  # counted by the items' attempts instead
    FRUITLESS = "may be fruitless"  # counts towards "workers keep stopping" if it did no work


def judge_stop(info: WorkerInfo, cause: str | None, *, hung: bool, blamed: bool) -> Judgement:
    """Judge a stop (``cause`` from ``attempt_cause``); ``blamed`` when its death is pinned on
    what it ran (an item in isolation, or a chunk of a call that blames items)."""
    if cause is None or hung:
        return Judgement.EXCUSED
    if info.fault == FAILED_TO_START:
        return Judgement.COULD_NOT_START
    return Judgement.BLAMED if blamed else Judgement.FRUITLESS


def could_not_start(stopped: Iterable[WorkerInfo]) -> WorkerInfo | None:
    """The first stopped worker that could not start, if one could not."""
    return next((info for info in stopped if info.fault == FAILED_TO_START), None)


# 3. Replacements -------------------------------------------------------------------------------


def launch_count(missing: int, affordable: int, room: int | None = None) -> int:
    """How many workers to launch for ``missing`` ones: as many as fit under the cost cap
    (``affordable``) and the launch budget (``room``; ``None``: no budget)."""
    return min(missing, affordable, missing if room is None else room)


def workers_within_cap(
    max_cost: float | None, hourly: Mapping[str, float] | None, spent: float
) -> int:
    """How many more workers fit under ``max_cost`` (each owing its first minute, at the
    dearer of the session's rates), from the session record alone."""
    if max_cost is None or not hourly:
        return 1 << 30
    return workers_affordable(max_cost - spent, max(hourly.values()))


def cap_reached(spent: float, max_cost: float | None) -> bool:
    """The session's workers have cost ``max_cost``: they all stop."""
    return max_cost is not None and spent >= max_cost


@dataclass(frozen=True)
class LaunchBudget:
    """Detached: a session launches at most ``MAX_LAUNCHES_PER_WORKER`` times the ``workers``
    it asked for, not counting those that died of an item (its attempts bound those).

    A supervisor's role moves between processes, so the count lives in the ledger; the
    attached client counts ``FruitlessExits`` in its memory instead (it can read whether a
    stopped worker did any work, and raise in the caller's thread).
    """

    workers: int
    launches: int

    @classmethod
    def from_ledger(cls, workers: int, ledger: Mapping[str, Mapping[str, object]]) -> LaunchBudget:
        return cls(workers, sum(not entry.get("item_death") for entry in ledger.values()))

    @property
    def room(self) -> int:
        return MAX_LAUNCHES_PER_WORKER * self.workers - self.launches

    def spent(self, live: int) -> bool:
        """Workers are missing and no launch is left."""
        return live < self.workers and self.room <= 0


@dataclass
class LaunchTrouble:
    """Launches that keep starting fewer workers than wanted: since when, the platform's
    latest reason, and when to ask again (backing off, so the platform is not hammered)."""

    since: float  # time.monotonic() of the first launch that fell short
    reason: str
    pause: float = RELAUNCH_PAUSES[0]
    next_try: float = 0.0
    told: bool = False  # the user heard about it (once)

    def waited(self, now: float) -> float:
        return now - self.since

    def fell_short(self, reason: str, now: float) -> None:
        """Another launch fell short: ask again after the pause, and double it."""
        self.reason = reason
        self.next_try = now + self.pause
        self.pause = min(2 * self.pause, RELAUNCH_PAUSES[1])


@dataclass(frozen=True)
class ShortfallVerdict:
    """What to do after a launch started fewer workers than asked (attached)."""

    quota: bool  # the platform allows fewer: work with those that run
    give_up: bool  # no worker runs and none will start
    tell: bool = False  # tell the user, once, that launches keep falling short
    trouble: LaunchTrouble | None = None  # the backing off (not for a quota)
    waited: float = 0.0  # seconds since launches began to fall short


def judge_shortfall(
    shortfall: LaunchShortfall | None, live: int, trouble: LaunchTrouble | None, now: float
) -> ShortfallVerdict:
    """A quota: work with the ``live`` workers (none: give up). No capacity: ask again later,
    tell the user once after ``LAUNCH_NOTICE_SECONDS``, and with no worker at all after
    ``LAUNCH_GIVE_UP_SECONDS`` (or at once, for a reason that is neither), give up."""
    if shortfall is None or shortfall.kind == "quota":
        return ShortfallVerdict(quota=True, give_up=not live and shortfall is not None)
    trouble = trouble or LaunchTrouble(since=now, reason=shortfall.reason)
    trouble.fell_short(shortfall.reason, now)
    waited = trouble.waited(now)
    hopeless = shortfall.kind != "capacity"
    if not live and (hopeless or waited >= LAUNCH_GIVE_UP_SECONDS):
        return ShortfallVerdict(quota=False, give_up=True, trouble=trouble, waited=waited)
    tell = waited >= LAUNCH_NOTICE_SECONDS and not trouble.told
    trouble.told |= tell
    return ShortfallVerdict(False, give_up=False, tell=tell, trouble=trouble, waited=waited)


# 4. Giving up ----------------------------------------------------------------------------------


@dataclass
class FruitlessExits:
    """Attached: workers that stopped before completing any item, in a row. Enough of them
    (``MAX_FRUITLESS_EXITS``, or a tenth of the workers up to ten) means they cannot work."""

    in_a_row: int = 0

    def count(self, worked: bool, target_workers: int) -> bool:
        """Count a stop (``worked``: the worker completed an item); whether to give up."""
        self.in_a_row = 0 if worked else self.in_a_row + 1
        return self.in_a_row >= max(MAX_FRUITLESS_EXITS, min(10, target_workers // 10))


def stall_reason(
    stopped: Iterable[WorkerInfo], live: int, budget: LaunchBudget, session_id: str
) -> str | None:
    """Detached: why launching more workers would not help, if it would not (the session
    becomes ``stalled``): one could not start, or the launch budget is spent."""
    failed = could_not_start(stopped)
    if failed is not None:
        return f"worker {failed.worker_id} could not start: {failed.reason}"
    if budget.spent(live):
        return (
            f"{budget.launches} workers were launched and they keep stopping; see "
            f"`starburst logs {session_id}`"
        )
    return None
