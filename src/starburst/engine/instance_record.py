"""The instances a session's workers ran on, kept in its store (``sessions/<sid>/
instances.json``) for a report made later or on another machine: ECS and EC2 show stopped
tasks and terminated instances for about an hour only, and only to the account's credentials.

The client that bills the instances (``CostGuard``, through the driver) writes what it read,
each time it reads them; ``starburst.report`` adds what the platform still shows. A detached
session's supervisor keeps them in the control record instead, in the same form
(``cost/instance_bill.InstanceReading``), so a report prices them all with the same
``cost/instance_bill.py`` as the closing line: nothing is computed twice.
"""

from __future__ import annotations

from ..cost.instance_bill import InstanceReading
from ..errors import DamagedRecordError
from ..store import NotFound, Store
from .control import Control
from .keys import SessionKeys
from .records import from_json, to_json


def keep_instances(store: Store, keys: SessionKeys, reading: InstanceReading) -> None:
    """Keep ``reading`` as the session's instances (over what was kept)."""
    store.put(keys.instances, to_json(reading.to_record()))


def kept_instances(store: Store, keys: SessionKeys) -> InstanceReading | None:
    """The session's instances as last kept: by the client that billed them, else by its
    supervisor (a detached session); None when neither kept any, or it cannot be read."""
    try:
        return InstanceReading.from_record(
            from_json(store.get(keys.instances), "the session's instance record")
        )
    except NotFound:
        pass
    except DamagedRecordError:
        return None
    try:
        return InstanceReading.from_record(Control.load(store, keys).instances)
    except (NotFound, DamagedRecordError):
        return None
