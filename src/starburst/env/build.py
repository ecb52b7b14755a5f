"""Build the worker image of an environment without Docker and push it to ECR, once.

An image is the slim official Python base, plus one layer of Linux wheels
(``/opt/starburst/site-packages``) and one of local code (``/opt/starburst/code``), with
``PYTHONPATH`` naming both and ``python -m starburst.worker`` as its command. Its tag is the
environment's fingerprint: a tag already in the repository is reused after one lookup.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..aws.connection import Aws, connect, translate_errors
from ..config import Config
from ..errors import EnvironmentProblemsError, RegistryError, SetupRequiredError
from .capture import Environment, capture
from .fingerprint import image_tag
from .layers import COMPRESSIONS, FIXED_MTIME, Layer, build_layer
from .registry import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageReference,
    Registry,
    sha256_digest,
)
from .wheels import ARCHITECTURES, install_linux_wheels

#: The base image: the official slim Python of the client's version, from ECR Public.
DEFAULT_BASE = "public.ecr.aws/docker/library/python:{python}-slim"
SITE_PACKAGES = "opt/starburst/site-packages"
CODE = "opt/starburst/code"
WORKER_COMMAND = ["python", "-m", "starburst.worker"]
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": COMPRESSIONS["gzip"],
}
#: Not part of an image: uv's cache record holds the time of the install.
_UNSHIPPED = ("uv_cache.json",)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Plan:
    """What an image for this environment would hold, and its tag."""

    environment: Environment
    base: ImageReference
    base_digest: str
    architecture: str
    compression: str
    tag: str


@dataclass
class BuiltImage:
    """The image for an environment in the user's repository."""

    uri: str
    tag: str
    cached: bool  # found in the repository: nothing built, nothing pushed
    digest: str | None = None  # of the manifest, when built now
    size: int = 0  # compressed bytes of all layers, when built now
    uploaded: list[str] = field(default_factory=list)  # digests of the blobs sent now


@dataclass
class Repository:
    """The user's image repository and a registry client logged in to it."""

    registry: Registry
    name: str

    def uri(self, tag: str) -> str:
        return f"{self.registry.host}/{self.name}:{tag}"


def ecr_repository(aws: Aws, resources: dict[str, Any]) -> Repository:
    """The ECR repository ``starburst setup`` made, with the token of
    ``ecr.get_authorization_token()``. ``STARBURST_REGISTRY_URL`` sends the registry traffic
    elsewhere (tests point it at a local registry); real use needs no setting."""
    if not resources.get("repository_uri"):
        raise SetupRequiredError(
            "starburst has no image repository in this AWS account yet: run `starburst setup`"
        )
    name = resources["repository_uri"].split("/", 1)[1]
    with translate_errors("log in to the image repository (ecr:GetAuthorizationToken)"):
        data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = os.environ.get("STARBURST_REGISTRY_URL") or data["proxyEndpoint"]
    return Repository(Registry(endpoint, user, password), name)


def repository_if_set_up() -> Repository | None:
    """The configured account's repository once ``starburst setup`` has run, else None."""
    resources = Config.load().aws
    if not resources.get("repository_uri"):
        return None
    return ecr_repository(connect(resources.get("region")), resources)


def plan_image(
    repository: Repository | None,
    paths: Sequence[str] | None = None,
    *,
    architecture: str = "x86_64",
    compression: str = "zstd",
) -> Plan:
    """Capture the environment and compute its tag (``STARBURST_BASE_IMAGE`` names another
    base image). Problems found locally are raised here, before anything is pushed."""
    environment = capture(paths)
    if environment.problems:
        raise EnvironmentProblemsError(environment.problems)
    text = os.environ.get("STARBURST_BASE_IMAGE") or DEFAULT_BASE.format(python=environment.python)
    base = ImageReference.parse(text)
    base_digest = base.digest or _registry_for(base, repository).manifest_digest(
        base.repository, base.reference
    )
    if not base_digest:
        raise RegistryError(
            f"the base image {base} was not found; check STARBURST_BASE_IMAGE (or unset it)"
        )
    tag = image_tag(
        environment,
        architecture=architecture,
        base=f"{base.host}/{base.repository}@{base_digest}",
        compression=compression,
    )
    return Plan(environment, base, base_digest, architecture, compression, tag)


def ensure_image(
    aws: Aws,
    resources: dict[str, Any],
    *,
    force: bool = False,
    paths: Sequence[str] | None = None,
    progress: Progress = _quiet,
) -> BuiltImage:
    """The image of the local environment in the user's ECR repository: looked up by its
    tag, and built and pushed only when missing (or when ``force``)."""
    return ensure_in(ecr_repository(aws, resources), force=force, paths=paths, progress=progress)


def ensure_in(
    repository: Repository,
    *,
    force: bool = False,
    paths: Sequence[str] | None = None,
    progress: Progress = _quiet,
) -> BuiltImage:
    """The image of the environment ``paths`` make importable, in ``repository``."""
    plan = plan_image(repository, paths)
    uri = repository.uri(plan.tag)
    if not force and repository.registry.manifest_digest(repository.name, plan.tag):
        return BuiltImage(uri, plan.tag, cached=True)
    progress(f"starburst: building the worker image {plan.tag} for this environment")
    with tempfile.TemporaryDirectory(prefix="starburst-image-") as scratch:
        return _build(plan, repository, Path(scratch), progress)


def _registry_for(reference: ImageReference, repository: Repository | None) -> Registry:
    """The target registry when the base lives there too, else an anonymous client."""
    if repository is not None and reference.host == repository.registry.host:
        return repository.registry
    return Registry(f"https://{reference.host}")


def _build(plan: Plan, repository: Repository, scratch: Path, progress: Progress) -> BuiltImage:
    env = plan.environment
    progress(f"starburst:   installing {len(env.distributions)} Linux packages (uv)")
    site = scratch / "site-packages"
    install_linux_wheels(env.distributions, site, python=env.python, architecture=plan.architecture)
    progress("starburst:   packing layers")
    wheels = build_layer(_tree(site, SITE_PACKAGES), scratch, plan.compression)
    code = build_layer([(f"{CODE}/{name}", path) for name, path in env.code], scratch,
                       plan.compression)  # fmt: skip
    source = _registry_for(plan.base, repository)
    base_manifest, base_config = _base_image(source, plan)
    registry, name = repository.registry, repository.name
    uploaded: list[str] = []
    progress("starburst:   pushing")
    for descriptor in base_manifest["layers"]:
        if _copy_base_layer(
            source, plan.base.repository, repository, descriptor["digest"], scratch
        ):
            uploaded.append(descriptor["digest"])
    for layer in (wheels, code):
        if not registry.has_blob(name, layer.digest):
            with layer.path.open("rb") as stream:
                registry.push_blob(name, layer.digest, stream)
            uploaded.append(layer.digest)
    config = _image_config(base_config, plan, [wheels, code])
    config_digest = registry.push_bytes(name, config)
    layers = [
        {**d, "mediaType": _OCI_LAYER_TYPES.get(d["mediaType"], d["mediaType"])}
        for d in base_manifest["layers"]
    ] + [{"mediaType": x.media_type, "digest": x.digest, "size": x.size} for x in (wheels, code)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": _CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{k: d[k] for k in ("mediaType", "digest", "size")} for d in layers],
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = _tag_image(registry, name, plan.tag, body)
    size = sum(d["size"] for d in layers)
    progress(f"starburst:   pushed {repository.uri(plan.tag)} ({size / 1e6:.1f} MB compressed)")
    return BuiltImage(repository.uri(plan.tag), plan.tag, False, digest, size, uploaded)


def _tag_image(registry: Registry, repository: str, tag: str, manifest: bytes) -> str:
    """Store ``manifest`` under ``tag``; returns its digest. A tag that names this very image
    already is left alone (a forced rebuild of the same environment): starburst's ECR
    repository keeps tags immutable, and refuses to move one."""
    digest = sha256_digest(manifest)
    existing = registry.manifest_digest(repository, tag)
    if existing == digest:
        return digest
    try:
        return registry.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    except RegistryError as exc:
        if existing is None:
            raise
        raise RegistryError(
            f"the tag {tag} of {registry.host}/{repository} names another image ({existing}) "
            f"and the registry would not move it ({exc}); if its tags are immutable, as "
            f"starburst's are, remove that image with `aws ecr batch-delete-image "
            f"--repository-name {repository} --image-ids imageTag={tag}`, then build again"
        ) from exc


def _tree(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for file_name in sorted(names):
            if file_name in _UNSHIPPED or file_name.endswith(".pyc"):
                continue
            path = Path(root) / file_name
            files.append((f"{prefix}/{path.relative_to(folder).as_posix()}", path))
    return files


def _base_image(source: Registry, plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base image's manifest for the target platform, and its config."""
    document, media_type, _ = source.get_manifest(plan.base.repository, plan.base_digest)
    if media_type in (OCI_INDEX, DOCKER_LIST):
        wanted = ARCHITECTURES[plan.architecture]
        chosen = [
            m
            for m in document.get("manifests", [])
            if m.get("platform", {}).get("os") == "linux"
            and m.get("platform", {}).get("architecture") == wanted
        ]
        if not chosen:
            raise RegistryError(f"the base image {plan.base} has no linux/{wanted} image")
        document, _, _ = source.get_manifest(plan.base.repository, chosen[0]["digest"])
    config = b"".join(source.get_blob(plan.base.repository, document["config"]["digest"]))
    return document, json.loads(config)


def _copy_base_layer(
    source: Registry, source_name: str, repository: Repository, digest: str, scratch: Path
) -> bool:
    """Make a base layer available in the user's repository; True if it had to be sent.
    Only the first build does any work: later ones find the layer there."""
    registry, name = repository.registry, repository.name
    if registry.has_blob(name, digest):
        return False
    if source is registry and registry.mount_blob(name, digest, source_name):
        return False
    download = scratch / "base-layer"
    with download.open("wb") as out:
        for piece in source.get_blob(source_name, digest):
            out.write(piece)
    with download.open("rb") as stream:
        registry.push_blob(name, digest, stream)
    download.unlink()
    return True


def _image_config(base: dict[str, Any], plan: Plan, layers: list[Layer]) -> bytes:
    """The base image's config with our layers, import path and worker command."""
    config = json.loads(json.dumps(base))
    settings = config.setdefault("config", {})
    env = [e for e in settings.get("Env") or [] if not e.startswith("PYTHONPATH=")]
    settings["Env"] = [*env, f"PYTHONPATH=/{CODE}:/{SITE_PACKAGES}", "PYTHONUNBUFFERED=1"]
    settings["Cmd"] = WORKER_COMMAND
    settings.pop("Entrypoint", None)
    settings["WorkingDir"] = f"/{CODE}"
    settings["Labels"] = {
        **(settings.get("Labels") or {}),
        "dev.starburst.environment": plan.tag,
        "dev.starburst.python": plan.environment.python,
        "dev.starburst.base": f"{plan.base}@{plan.base_digest}",
    }
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    created = datetime.fromtimestamp(FIXED_MTIME, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config["history"] = [
        *(config.get("history") or []),
        {"created": created, "created_by": "starburst: Linux wheels of the environment"},
        {"created": created, "created_by": "starburst: local code and starburst"},
    ]
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
