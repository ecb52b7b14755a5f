"""The instances a session's workers ran on, kept in its store (``sessions/<sid>/
instances.json``) for a report made later or on another machine: ECS and EC2 show stopped
tasks and terminated instances for about an hour only, and only to the account's credentials.

The client that bills the instances (``CostGuard``, through the driver) writes what it read,
each time it reads them; ``starburst.report`` adds what the platform still shows. The
record holds the backend's ``InstanceUse`` as read, so a report prices them with the same
``cost/instance_bill.py`` as the closing line: nothing is computed twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..backends.base import InstanceUse
from ..cost.instance_bill import with_forgotten
from ..errors import DamagedRecordError
from ..store import NotFound, Store
from .keys import SessionKeys
from .records import decode_record, record_of, to_json


@dataclass
class InstanceRecord:
    """The session's instances as last read, from ``since`` (the session's start)."""

    since: float
    read: float  # when they were read (epoch seconds)
    instances: list[InstanceUse] = field(default_factory=list)

    def merged(self, newer: InstanceRecord) -> InstanceRecord:
        """This record with a later read's instances over it (``with_forgotten``: one the
        later read no longer lists stays, ended at this read if it was up then)."""
        instances = with_forgotten(self.instances, self.read, newer.instances)
        return InstanceRecord(min(self.since, newer.since), max(self.read, newer.read), instances)

    def save(self, store: Store, keys: SessionKeys) -> None:
        store.put(keys.instances, to_json(self))

    @classmethod
    def load(cls, store: Store, keys: SessionKeys) -> InstanceRecord | None:
        """The stored record; None when there is none, or it cannot be read."""
        what = "the session's instance record"
        try:
            record = decode_record(cls, store.get(keys.instances), what)
            uses = [record_of(InstanceUse, raw, what) for raw in record.instances]
        except (NotFound, DamagedRecordError):
            return None
        record.instances = [
            dataclasses.replace(use, workers=tuple(use.workers)) for use in uses
        ]  # (JSON has lists)
        return record
