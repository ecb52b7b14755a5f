"""One Auto Scaling group, several sessions: which instance types the group holds while
sessions of different worker sizes run on it at once.

Each session that asks a group for instances records what its workers need on the group, as
a tag (``starburst:needs:<session id>``: the worker's size and the session's choice of types,
and when it was recorded), and takes it off when it ends. The group's types are then
``group_types`` of every live session's need: the types, among those any of them chose, that
carry a worker of *every* live session, so that any instance the group launches (Spot picks
freely among the types; managed scaling sizes by the smallest) serves whichever session
waits; when no such type exists, or only types none of some session's own choice (a GPU type
for CPU workers), the union, the kick-starting session's first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .instances import CATALOGUE, MAX_TYPES_PER_GROUP, InstanceType, choose_instance_types

#: The prefix of the tag that records a session's need on a group.
NEEDS_TAG = "starburst:needs:"
#: A recorded need counts this long without any task of its session (it has just asked
#: for instances, its first tasks are on their way).
FRESH_SECONDS = 120.0
#: AWS's limit on a tag's value.
_TAG_VALUE_LIMIT = 256


@dataclass(frozen=True)
class Need:
    """What one session's workers need of an instance: their size, and the session's choice
    of types (``instance_types``, ``arch``)."""

    cpu_units: int
    memory_mib: int
    gpus: int = 0
    arch: str | None = None
    instance_types: tuple[str, ...] = ()
    recorded: float = 0.0  # epoch seconds

    def types(self) -> list[InstanceType]:
        """The types the session would choose alone (``choose_instance_types``)."""
        return choose_instance_types(
            self.cpu_units / 1024,
            self.memory_mib,
            self.gpus,
            list(self.instance_types) or None,
            self.arch,
        )

    def carried_by(self, kind: InstanceType) -> bool:
        """Whether one instance of ``kind`` carries a worker of this session (and runs its
        image: the architecture of the types it chose)."""
        arches = {t.arch for t in self.types()}
        fits = kind.workers_that_fit(self.cpu_units / 1024, self.memory_mib, self.gpus)
        return fits >= 1 and kind.arch in arches

    def encode(self) -> str:
        """The tag's value: short enough for AWS (exact types become their families)."""
        names = self.instance_types
        text = self._text(names)
        if len(text) > _TAG_VALUE_LIMIT:  # families hold the same types, and more
            families = (CATALOGUE[n].family if n in CATALOGUE else n for n in names)
            names = tuple(dict.fromkeys(families))
            text = self._text(names)
        return text

    def _text(self, names: tuple[str, ...]) -> str:
        fields = [self.cpu_units, self.memory_mib, self.gpus, self.arch or "", ",".join(names)]
        return "/".join(str(f) for f in [*fields, f"{self.recorded:.0f}"])

    @classmethod
    def decode(cls, text: str) -> Need | None:
        """A recorded need (None for a value it cannot read)."""
        try:
            cpu, memory, gpus, arch, names, recorded = text.split("/")
            return cls(
                int(cpu), int(memory), int(gpus), arch or None,
                tuple(n for n in names.split(",") if n), float(recorded),
            )  # fmt: skip
        except ValueError:
            return None


def recorded_needs(group: dict[str, Any]) -> dict[str, Need]:
    """The needs sessions recorded on ``group`` (as AWS describes it): session id -> need."""
    found = {}
    for tag in group.get("Tags", []):
        if tag["Key"].startswith(NEEDS_TAG):
            need = Need.decode(tag["Value"])
            if need is not None:
                found[tag["Key"][len(NEEDS_TAG) :]] = need
    return found


def is_fresh(need: Need) -> bool:
    """Whether ``need`` was recorded too recently for its session to have tasks yet."""
    return time.time() - need.recorded < FRESH_SECONDS


def record_need(autoscaling: Any, group: str, session_id: str, need: Need) -> None:
    """Record on ``group`` what ``session_id``'s workers need."""
    autoscaling.create_or_update_tags(Tags=[_tag(group, session_id, need.encode())])


def forget_needs(autoscaling: Any, group: str, session_ids: list[str]) -> None:
    """Take these sessions' needs off ``group``."""
    if session_ids:
        autoscaling.delete_tags(Tags=[_tag(group, s, "") for s in session_ids])


def _tag(group: str, session_id: str, value: str) -> dict[str, Any]:
    return {
        "ResourceId": group,
        "ResourceType": "auto-scaling-group",
        "Key": NEEDS_TAG + session_id,
        "Value": value,
        "PropagateAtLaunch": False,  # the group's own record: its instances need none
    }


def group_types(needs: list[Need]) -> list[InstanceType]:
    """The types a group holds for ``needs`` (the first: the session asking for instances
    now): those of any session's choice that carry a worker of every session, when some of
    each session's own choice are among them; else the union, the first session's leading.
    At most the 40 types a group takes."""
    chosen = [need.types() for need in needs]
    union = list(dict.fromkeys(t for types in chosen for t in types))
    common = [t for t in union if all(need.carried_by(t) for need in needs)]
    if all(any(t in common for t in types) for types in chosen):
        return sorted(common, key=lambda t: (t.vcpus, t.memory_mib))[:MAX_TYPES_PER_GROUP]
    return union[:MAX_TYPES_PER_GROUP]
