"""A real OCI registry for tests: Debian's ``docker-registry`` on a free loopback port.

``RegistryServer(folder).start()`` serves plain HTTP without authentication;
``RegistryServer(folder, secure=True)`` serves TLS with a self-signed certificate for
127.0.0.1 and asks for Basic auth with exactly the credentials moto's ECR token decodes to
(``AWS`` / ``123456789012-auth-token``). ``ca_file`` is the certificate clients must trust.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ECR_USER = "AWS"
ECR_PASSWORD = "123456789012-auth-token"  # what moto's GetAuthorizationToken hands out


def registry_available() -> bool:
    """Whether ``docker-registry`` is installed (``.ci/run`` installs it)."""
    return shutil.which("docker-registry") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class RegistryServer:
    """One ``docker-registry serve`` process with its storage in ``folder``."""

    def __init__(self, folder: Path, *, secure: bool = False) -> None:
        self.folder = folder
        self.secure = secure
        self.port = _free_port()
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of its image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}"

    def start(self) -> RegistryServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        http: dict[str, Any] = {"addr": self.host}
        settings: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.folder / "data")},
                "delete": {"enabled": True},
            },
            "http": http,
        }
        if self.secure:
            import bcrypt

            cert_file, key_file = _self_signed(self.folder)
            self.ca_file = cert_file
            hashed = bcrypt.hashpw(ECR_PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
            (self.folder / "htpasswd").write_text(f"{ECR_USER}:{hashed}\n")
            http["tls"] = {"certificate": str(cert_file), "key": str(key_file)}
            settings["auth"] = {
                "htpasswd": {"realm": "starburst-tests", "path": str(self.folder / "htpasswd")}
            }
        config = self.folder / "config.yml"
        config.write_text(json.dumps(settings))  # YAML reads JSON
        self._proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "registry.log").open("wb"),
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.secure else None
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = (self.folder / "registry.log").read_text()
                raise RuntimeError(f"docker-registry exited at start:\n{log}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context)
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on {self.url}")
            time.sleep(0.05)

    def push_tiny_base(self, repository: str, tag: str) -> None:
        """Push a base image of one small layer (nothing can be pulled offline) under
        ``repository:tag``, with the config a slim Python image would have."""
        from starburst.env.registry import OCI_MANIFEST, Registry

        client = Registry(self.url, ECR_USER, ECR_PASSWORD)
        plain = _tar({"etc/os-release": b"PRETTY_NAME=tiny test base\n"})
        layer = gzip.compress(plain, mtime=0)
        diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONPATH=/nowhere"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }).encode()  # fmt: skip
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": client.push_bytes(repository, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": client.push_bytes(repository, layer),
                    "size": len(layer),
                }
            ],
        }
        client.put_manifest(repository, tag, json.dumps(manifest).encode(), OCI_MANIFEST)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
