"""Warm instances: ``keep_warm`` leaves a call's empty EC2 instances up for the next call.

How long they stay is a tag on starburst's Auto Scaling groups (``starburst:warm-until``,
seconds since the epoch), so every process and machine sees it: a later call's workers are
placed on the warm instances (no boot, the image already pulled), its own ``keep_warm``
extends the time, and the end of a call without ``keep_warm`` leaves them alone until then.

When the time comes, a small process the call left behind (``python -m
starburst.backends.ec2.warmth UNTIL``, detached from the caller) gives back the instances
that are still empty. If that process is gone too (the laptop closed), managed scaling
removes empty instances on its own after about 15 minutes: the server-side backstop.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fleet import Ec2Fleet

#: The groups' tag that holds the time (seconds since the epoch) their instances stay warm.
WARM_TAG = "starburst:warm-until"


def warm_until(autoscaling: Any, groups: list[str]) -> float:
    """Until when starburst's groups are kept warm (0.0: never set)."""
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=groups)
    times = [
        float(tag["Value"])
        for group in found["AutoScalingGroups"]
        for tag in group.get("Tags", [])
        if tag["Key"] == WARM_TAG
    ]
    return max(times, default=0.0)


def keep_warm_until(autoscaling: Any, groups: list[str], until: float) -> None:
    """Keep the groups' empty instances until ``until``, and leave a process behind that
    gives them back then."""
    autoscaling.create_or_update_tags(
        Tags=[
            {
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
                "Key": WARM_TAG,
                "Value": f"{until:.0f}",
                "PropagateAtLaunch": False,
            }
            for group in groups
        ]
    )
    _leave_behind(until)


def _leave_behind(until: float) -> None:
    """Start the process that gives the instances back at ``until`` (its errors go to
    ``ec2-warmth.log`` in the cache folder)."""
    from ...cost.model import cache_dir

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ec2-warmth.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", __name__, f"{until:.0f}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # it outlives the caller, and a Ctrl-C there
        )


def give_back_when_cold(fleet: Ec2Fleet, until: float) -> None:
    """Wait until ``until``; then, unless a later call moved the time on (its own process
    is in charge then), give back the instances that are still empty."""
    groups = list(fleet.ec2["groups"].values())
    time.sleep(max(0.0, until - time.time()))
    if warm_until(fleet.autoscaling, groups) <= until:
        fleet.release_idle()


def main(argv: list[str]) -> None:
    """``python -m starburst.backends.ec2.warmth UNTIL``, for the configured account."""
    from ...aws.connection import connect
    from ...config import Config
    from .fleet import Ec2Fleet

    until = float(argv[0])
    resources = Config.load().aws
    fleet = Ec2Fleet(connect(resources.get("region")), resources, image="")
    give_back_when_cold(fleet, until)


if __name__ == "__main__":
    main(sys.argv[1:])
