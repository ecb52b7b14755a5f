"""`starburst env prune` on the emulator's ECR: old environment images go, used ones stay."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import boto3

import starburst
from starburst.config import Config
from starburst.env.prune import record_session_image
from starburst.store.s3 import S3Store

OLD_USED_BY_SESSION = "py311-" + "a" * 32
OLD_UNUSED = "py311-" + "b" * 32
OLD_OF_A_CLOSED_SESSION = "py311-" + "c" * 32
NOT_OURS = "latest"


REPOSITORY = "starburst-workers"  # what `starburst setup` creates


def _put_image(ecr, tag: str) -> None:
    """Register an image in the ECR API (the control plane prune talks to)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + tag[-1] * 64, "size": 2},
        "layers": [],
    }  # fmt: skip
    body = json.dumps(manifest)
    digest = "sha256:" + hashlib.sha256(body.encode()).hexdigest()  # moto does not compute it
    ecr.put_image(repositoryName=REPOSITORY, imageManifest=body, imageTag=tag, imageDigest=digest)


def _prune(older_than: int) -> subprocess.CompletedProcess[str]:
    """``starburst env prune --older-than N`` as a user runs it; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "starburst", "env", "prune", "--older-than", str(older_than)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_prune_deletes_old_environment_images_but_none_in_use(aws) -> None:
    starburst.setup(say=lambda _: None)
    resources = Config.load().aws
    ecr = boto3.client("ecr")
    for tag in (OLD_USED_BY_SESSION, OLD_UNUSED, OLD_OF_A_CLOSED_SESSION, NOT_OURS):
        _put_image(ecr, tag)
    store = S3Store(resources["bucket"], "")
    host = resources["repository_uri"]
    record_session_image(store, "sb-live", f"{host}:{OLD_USED_BY_SESSION}")  # no record yet
    record_session_image(store, "sb-over", f"{host}:{OLD_OF_A_CLOSED_SESSION}")
    store.put("sessions/sb-over/session.json", _expired_session_record("sb-over"))
    time.sleep(0.01)  # every image is now older than 0 days

    done = _prune(older_than=0)
    assert "2 image(s) deleted" in done.stdout
    left = {t for d in ecr.describe_images(repositoryName=REPOSITORY)["imageDetails"]
            for t in d.get("imageTags", [])}  # fmt: skip
    assert left == {OLD_USED_BY_SESSION, NOT_OURS}


def test_prune_keeps_recent_images(aws) -> None:
    starburst.setup(say=lambda _: None)
    _put_image(boto3.client("ecr"), OLD_UNUSED)
    done = _prune(older_than=1)
    assert "0 image(s) deleted" in done.stdout


def _expired_session_record(session_id: str) -> bytes:
    from starburst.engine.session_record import SessionRecord, Timings

    timings = Timings.for_store(S3Store("unused", ""), attached=False)
    record = SessionRecord(session_id, "fargate", 1, 1.0, None, timings, deadline=1.0)
    return record.encode()
