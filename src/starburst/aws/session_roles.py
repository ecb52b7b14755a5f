"""The role each session's workers run as: made when the session starts, removed with it.

One role per session is what keeps sessions apart: its policy (``resources.
session_role_policy``) reaches that session's keys and tasks only, so code running in one
session's workers cannot read, forge or stop another's. Roles live under
``resources.SESSION_ROLE_PATH``, tagged with their session, so that teardown finds any that a
killed client left behind.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.exceptions

from ..errors import ConfigurationError
from . import resources as r
from .connection import Aws, translate_errors


def create_session_role(
    aws: Aws,
    names: r.Names,
    session_id: str,
    also: str | None = None,
    *,
    cluster: str | None = None,
    reads_instances: bool = False,
) -> str:
    """Make the role of ``session_id``'s workers, with the managed policy ``also`` attached
    when given (the ``worker_policy`` setting: what else the user's workers may reach), for
    tasks in ``cluster`` (``r.session_role_policy``); returns its ARN."""
    iam = aws.client("iam")
    name = names.session_role(session_id)
    policy = r.session_role_policy(names, session_id, cluster, reads_instances)
    try:
        with translate_errors(f"create the role of session {session_id}"):
            return _create(iam, names, session_id, also, policy)
    except BaseException:
        with translate_errors(f"remove the role of session {session_id}"):
            delete_role(iam, name)
        raise


def _create(
    iam: Any, names: r.Names, session_id: str, also: str | None, policy: dict[str, Any]
) -> str:
    name = names.session_role(session_id)
    arn = iam.create_role(
        Path=r.SESSION_ROLE_PATH,
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(r.ecs_tasks_trust(names)),
        Description=f"starburst workers of session {session_id}: its own data only",
        Tags=[
            {"Key": r.TAG_KEY, "Value": r.TAG_VALUE},
            {"Key": r.SESSION_TAG_KEY, "Value": session_id},
        ],
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName=r.SESSION_POLICY_NAME,
        PolicyDocument=json.dumps(policy),
    )
    if also:
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=also)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchEntity", "InvalidInput"):
                raise
            raise ConfigurationError(
                f"the worker_policy setting {also!r} names no managed IAM policy here "
                f"({exc.response['Error'].get('Message', '')}); set the ARN of one with "
                "`starburst config set worker_policy arn:aws:iam::ACCOUNT:policy/NAME`, or "
                "`starburst config unset worker_policy`"
            ) from exc
    return str(arn)


def remove_session_role(aws: Aws, names: r.Names, session_id: str) -> None:
    """Remove the role of ``session_id``'s workers (nothing when it is gone already)."""
    iam = aws.client("iam")
    with translate_errors(f"remove the role of session {session_id}"):
        delete_role(iam, names.session_role(session_id))


def leftover_session_roles(aws: Aws) -> list[str]:
    """The names of every session role starburst made in this account (teardown's list)."""
    iam = aws.client("iam")
    found: list[str] = []
    with translate_errors("list the sessions' roles"):
        for page in iam.get_paginator("list_roles").paginate(PathPrefix=r.SESSION_ROLE_PATH):
            found += [role["RoleName"] for role in page["Roles"]]
    return found


def delete_role(iam: Any, name: str) -> bool:
    """Detach and delete the role's policies, then the role; False when there was none."""
    try:
        for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        iam.delete_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True
