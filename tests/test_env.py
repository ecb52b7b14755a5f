"""Environment sync against a real OCI registry (Debian's docker-registry on loopback).

Images are built for a small environment (a wheel made here, installed into a folder of its
own, and a local module), pushed, read back with an independent reader, and run: the
emulator's task runner starts the worker from the unpacked image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import starburst
from starburst import EnvironmentProblemsError
from starburst.aws.connection import connect
from starburst.emulator.images import ImageReader
from starburst.emulator.registry import ECR_PASSWORD, ECR_USER, RegistryServer, registry_available
from starburst.env.build import BuiltImage, ensure_image
from starburst.env.capture import capture
from starburst.env.registry import Registry
from starburst.env.wheels import uv_binary

pytestmark = pytest.mark.skipif(
    not registry_available(), reason="docker-registry is not installed (.ci/run installs it)"
)

BASE_REPOSITORY = "library/python"
BASE_TAG = "3.11-slim"


def make_wheel(folder: Path, name: str, version: str, body: str, tag: str = "py3-none-any") -> Path:
    """A minimal wheel of one module package, written without any build tool."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    record = []
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        wheel.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


def install(wheel: Path, target: Path) -> Path:
    """Install ``wheel`` into the folder ``target`` (its own site-packages)."""
    subprocess.run(
        [uv_binary(), "pip", "install", "--quiet", "--offline", "--python", sys.executable,
         "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return folder


@pytest.fixture
def local_code(tmp_path: Path) -> Path:
    """A folder with a local module, as a user's working directory would have."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "localmod.py").write_text("def double(x):\n    return 2 * x\n")
    return folder


@pytest.fixture
def site(tmp_path: Path, wheels: Path) -> Path:
    """A site-packages folder holding the third-party package ``tinypkg`` 0.1."""
    return install(make_wheel(wheels, "tinypkg", "0.1", "VALUE = 1\n"), tmp_path / "site")


@pytest.fixture(params=["http", "tls+basic-auth"])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws
) -> Iterator[RegistryServer]:
    """The registry, holding a tiny base image, set up as the user's ECR registry would be."""
    server = RegistryServer(tmp_path / "registry", secure=request.param != "http").start()
    try:
        if server.ca_file:
            monkeypatch.setenv("AWS_CA_BUNDLE", str(server.ca_file))
        server.push_tiny_base(BASE_REPOSITORY, BASE_TAG)
        monkeypatch.setenv("STARBURST_REGISTRY_URL", server.url)
        monkeypatch.setenv("STARBURST_BASE_IMAGE", f"{server.host}/{BASE_REPOSITORY}:{BASE_TAG}")
        monkeypatch.delenv("STARBURST_IMAGE")
        yield server
    finally:
        server.stop()


@pytest.fixture
def resources(aws) -> dict[str, str]:
    """What ``starburst setup`` records about the image repository."""
    ecr = boto3.client("ecr")
    uri = ecr.create_repository(repositoryName="starburst")["repository"]["repositoryUri"]
    return {"repository_uri": uri, "region": aws.region}


def build(resources: dict[str, str], paths: list[Path], **options: bool) -> BuiltImage:
    return ensure_image(
        connect(resources["region"]), resources, paths=[str(p) for p in paths], **options
    )


def reader(registry: RegistryServer) -> ImageReader:
    return ImageReader(registry.url, ca_file=registry.ca_file, auth=(ECR_USER, ECR_PASSWORD))


def test_an_image_carries_the_packages_the_local_module_and_the_worker_command(
    registry: RegistryServer, resources, site: Path, local_code: Path, tmp_path: Path
) -> None:
    image = build(resources, [site, local_code])
    assert not image.cached
    assert image.uri == f"{registry.host}/starburst:{image.tag}"
    pulled = reader(registry).pull("starburst", image.tag, tmp_path / "unpacked")
    names = [set(layer) for layer in pulled.layer_names]
    assert "etc/os-release" in names[0]  # the base, then wheels, then code
    assert "opt/starburst/site-packages/tinypkg/__init__.py" in names[1]
    assert "opt/starburst/code/localmod.py" in names[2]
    assert "opt/starburst/code/starburst/worker/__main__.py" in names[2]
    settings = pulled.config["config"]
    assert settings["Cmd"] == ["python", "-m", "starburst.worker"]
    assert pulled.env()["PYTHONPATH"] == "/opt/starburst/code:/opt/starburst/site-packages"
    assert pulled.env()["PATH"] == "/usr/local/bin:/usr/bin:/bin"  # the base's, kept


def test_the_same_environment_gives_the_same_digest_and_the_second_time_pushes_nothing(
    registry: RegistryServer, resources, site: Path, local_code: Path
) -> None:
    first = build(resources, [site, local_code])
    again = build(resources, [site, local_code])
    rebuilt = build(resources, [site, local_code], force=True)
    assert first.uploaded  # the base layer once, the wheels, the code
    assert again.cached and again.tag == first.tag and again.uploaded == []
    assert rebuilt.digest == first.digest  # reproducible layers, config and manifest
    assert rebuilt.uploaded == []  # every blob was there already


def test_a_changed_package_version_gives_a_new_tag(
    registry: RegistryServer, resources, site: Path, local_code: Path, wheels: Path, tmp_path
) -> None:
    newer = install(make_wheel(wheels, "tinypkg", "0.2", "VALUE = 2\n"), tmp_path / "site2")
    changed_code = tmp_path / "project2"
    changed_code.mkdir()
    (changed_code / "localmod.py").write_text("def double(x):\n    return x + x\n")
    first = build(resources, [site, local_code])
    assert build(resources, [newer, local_code]).tag != first.tag
    assert build(resources, [site, changed_code]).tag != first.tag


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_a_package_without_a_linux_build_is_named_before_any_push(
    registry: RegistryServer, resources, site: Path, wheels: Path
) -> None:
    windows_only = make_wheel(wheels, "winonly", "1.0", "", tag="cp311-cp311-win_amd64")
    _fake_install(site, "winonly", "1.0", windows_only.as_uri())
    with pytest.raises(EnvironmentProblemsError, match=r"winonly 1\.0: no Linux x86_64 wheel"):
        build(resources, [site])
    assert Registry(registry.url).tags("starburst") == []


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_a_package_installed_from_a_path_that_is_gone_is_named(
    registry: RegistryServer, resources, site: Path, tmp_path: Path
) -> None:
    _fake_install(site, "gonepkg", "2.0", (tmp_path / "gone" / "gonepkg").as_uri())
    problems = capture([str(site)]).problems
    assert [p.name for p in problems] == ["gonepkg 2.0"]
    with pytest.raises(EnvironmentProblemsError, match=r"gonepkg 2\.0: it was installed from"):
        build(resources, [site])


def _fake_install(site: Path, name: str, version: str, url: str) -> None:
    """Metadata of a distribution installed from ``url`` (as pip or uv leave it)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "direct_url.json").write_text(json.dumps({"url": url, "archive_info": {}}))


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_a_map_runs_from_the_image_contents(
    registry: RegistryServer, aws, wheels: Path, local_code: Path, tmp_path: Path
) -> None:
    """A clean client environment (a venv with starburst and tinypkg) maps on Fargate; the
    task runner unpacks the image it built and starts the worker from it alone."""
    starburst.setup(say=lambda _: None)
    aws.runner.registries[registry.host] = reader(registry)
    venv = tmp_path / "venv"
    repo = Path(starburst.__file__).parents[2]
    subprocess.run(
        [uv_binary(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True
    )
    subprocess.run(
        [uv_binary(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-e", str(repo), str(make_wheel(wheels, "tinypkg", "0.1", "VALUE = 1\n"))],
        check=True,
    )  # fmt: skip
    script = local_code / "client.py"
    script.write_text(
        "import json, starburst, localmod\n"
        "def work(x):\n"
        "    import sys, tinypkg, localmod, starburst, cloudpickle\n"
        "    return [localmod.double(x) + tinypkg.VALUE,\n"
        "            [m.__file__ for m in (tinypkg, localmod, starburst, cloudpickle)]]\n"
        "print(json.dumps(starburst.map(work, range(4), backend='fargate', workers=1)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("STARBURST_IMAGE", "PYTHONPATH")}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv, cwd=local_code, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done

    starburst_command = str(venv / "bin" / "starburst")
    shown = run(starburst_command, "env", "show").stdout
    assert "tinypkg==0.1  (from " in shown and "local code: client, localmod, starburst" in shown
    (tag,) = (line.split()[1] for line in shown.splitlines() if line.startswith("tag "))
    assert f"starburst-workers:{tag} (not built yet)" in shown
    done = run(str(venv / "bin" / "python"), str(script))
    assert f"building the worker image {tag}" in done.stderr
    assert (
        f"starburst-workers:{tag} (already built)" in run(starburst_command, "env", "build").stdout
    )
    results = json.loads(done.stdout)
    assert [value for value, _ in results] == [1, 3, 5, 7]
    for _, files in results:  # every module came from the unpacked image
        assert all("/emulator-images-" in f and "/opt/starburst/" in f for f in files), files
