"""Remove old environment images from the user's ECR repository, never one still in use.

An image is in use while a task of starburst's cluster runs it, or while a session that
recorded it (``sessions/<sid>/image.json``, written when the session is placed on AWS) is
still open: until its deadline, a detached session may start workers again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from ..aws.connection import Aws, translate_errors
from ..engine.keys import SessionKeys
from ..engine.session_record import SessionRecord
from ..store import NotFound, Store

#: Tags of images starburst built (see ``fingerprint.image_tag``).
ENVIRONMENT_TAG = re.compile(r"^py\d+-[0-9a-f]{32}$")
_DELETE_BATCH = 100


def image_marker_key(session_id: str) -> str:
    """Where a session records the image its workers run."""
    return f"{SessionKeys(session_id).prefix}image.json"


def record_session_image(store: Store, session_id: str, image: str) -> None:
    """Note that ``session_id`` runs ``image``, so that pruning keeps it."""
    store.put(image_marker_key(session_id), json.dumps({"image": image}).encode())


def images_in_use(aws: Aws, resources: dict[str, Any], store: Store) -> set[str]:
    """Tags of images that running tasks or open sessions use."""
    used = {_tag(image) for image in _session_images(store)}
    ecs = aws.client("ecs")
    with translate_errors("list the running workers"):
        arns = [
            arn
            for page in ecs.get_paginator("list_tasks").paginate(
                cluster=resources["cluster"], desiredStatus="RUNNING"
            )
            for arn in page["taskArns"]
        ]
        for start in range(0, len(arns), 100):
            tasks = ecs.describe_tasks(
                cluster=resources["cluster"], tasks=arns[start : start + 100]
            )
            for task in tasks["tasks"]:
                used.update(_tag(c.get("image", "")) for c in task.get("containers", []))
    return used - {""}


def _session_images(store: Store) -> list[str]:
    images = []
    now = time.time()
    for key in store.list("sessions/"):
        if not key.endswith("/image.json"):
            continue
        session_id = key.split("/")[1]
        try:
            if SessionRecord.load(store, session_id).deadline < now:
                continue
        except NotFound:
            pass  # a session being created: its record is not written yet
        try:
            images.append(json.loads(store.get(key))["image"])
        except NotFound:
            continue  # the session closed meanwhile
    return images


def _tag(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.partition(":")[2].partition("@")[0]


def prune_images(
    aws: Aws,
    resources: dict[str, Any],
    store: Store,
    older_than_days: float,
    say: Callable[[str], None],
) -> list[str]:
    """Delete environment images not pushed or pulled for ``older_than_days`` and not in use;
    returns the tags deleted."""
    ecr = aws.client("ecr")
    repository = resources["repository_uri"].split("/", 1)[1]
    keep = images_in_use(aws, resources, store)
    cutoff = time.time() - older_than_days * 86400
    doomed: dict[str, str] = {}  # digest -> tag
    with translate_errors(f"list the images of {repository}"):
        pages = ecr.get_paginator("describe_images").paginate(
            repositoryName=repository, filter={"tagStatus": "TAGGED"}
        )
        for page in pages:
            for image in page["imageDetails"]:
                tags = [t for t in image.get("imageTags", []) if ENVIRONMENT_TAG.match(t)]
                pulled = image.get("lastRecordedPullTime") or image["imagePushedAt"]
                last_used = max(image["imagePushedAt"], pulled).timestamp()
                if tags and not keep.intersection(tags) and last_used < cutoff:
                    doomed[image["imageDigest"]] = tags[0]
    digests = sorted(doomed)
    with translate_errors(f"delete images from {repository}"):
        for start in range(0, len(digests), _DELETE_BATCH):
            batch = digests[start : start + _DELETE_BATCH]
            ecr.batch_delete_image(
                repositoryName=repository, imageIds=[{"imageDigest": d} for d in batch]
            )
    for digest in digests:
        say(f"deleted {doomed[digest]} ({digest[:19]})")
    return [doomed[d] for d in digests]


def prune(older_than_days: float, say: Callable[[str], None]) -> list[str]:
    """``starburst env prune``: prune the configured account's repository."""
    from ..aws.connection import connect
    from ..config import Config
    from ..errors import SetupRequiredError
    from ..store.s3 import account_bucket

    resources = Config.load().aws
    if not resources.get("bucket") or not resources.get("repository_uri"):
        raise SetupRequiredError("starburst is not set up here yet: run `starburst setup`")
    aws = connect(resources.get("region"))
    store = account_bucket(aws, resources)
    return prune_images(aws, resources, store, older_than_days, say)
