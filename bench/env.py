"""Measure environment sync for an environment with numpy and pandas, against the issue's targets.

    .venv/bin/python bench/env.py            # cold with an empty uv cache, then warm, then cached

A throwaway venv gets starburst (editable), numpy and pandas; its site-packages is the
environment. Images are built and pushed to Debian's ``docker-registry`` on loopback, on a
tiny base image (no base can be pulled offline: the real python:3.11-slim base is copied into
ECR once per account and is not part of these figures). Three figures, each against its target:

- compressed size of the image's own layers (Linux wheels + code): at most 150 MB;
- cold build and push: capture, uv install for Linux x86_64, layers, upload: at most 60 s
  (measured with an empty uv cache, so that it includes downloading the wheels from PyPI,
  and again with a warm cache);
- cached check, when the image exists: capture, hash, one manifest HEAD: at most 2 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # the emulator package: tests/emulator

from starburst.emulator.registry import ECR_PASSWORD, ECR_USER, RegistryServer  # noqa: E402
from starburst.env.build import Repository, ensure_in  # noqa: E402
from starburst.env.registry import Registry  # noqa: E402
from starburst.env.wheels import uv_binary  # noqa: E402

PACKAGES = ["numpy", "pandas"]
TARGETS = {"size_mb": 150.0, "cold_s": 60.0, "cached_s": 2.0}


def make_environment(folder: Path) -> str:
    """A venv with starburst, numpy and pandas; returns its site-packages."""
    venv = folder / "venv"
    subprocess.run([uv_binary(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [uv_binary(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "-e", str(repo), *PACKAGES],
        check=True,
    )  # fmt: skip
    (site,) = (venv / "lib").glob("python*/site-packages")
    return str(site)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="starburst-bench-env-") as scratch:
        folder = Path(scratch)
        site = make_environment(folder)
        server = RegistryServer(folder / "registry").start()
        try:
            server.push_tiny_base("library/python", "3.11-slim")
            os.environ["STARBURST_BASE_IMAGE"] = f"{server.host}/library/python:3.11-slim"
            repository = Repository(Registry(server.url, ECR_USER, ECR_PASSWORD), "starburst")
            os.environ["UV_CACHE_DIR"] = str(folder / "uv-cache")  # empty: truly cold
            began = time.perf_counter()
            built = ensure_in(repository, paths=[site], progress=print)
            cold = time.perf_counter() - began
            began = time.perf_counter()
            ensure_in(repository, paths=[site], force=True)  # same digest, nothing uploaded
            warm = time.perf_counter() - began
            began = time.perf_counter()
            cached = ensure_in(repository, paths=[site])
            check = time.perf_counter() - began
        finally:
            server.stop()
    assert cached.cached
    # The size includes the tiny test base: a few hundred bytes.
    figures = {"size_mb": built.size / 1e6, "cold_s": cold, "cached_s": check}
    print(f"\nenvironment: starburst + {' + '.join(PACKAGES)}, image {built.tag}")
    rows = [
        ("compressed size of the image's layers", "size_mb", "MB"),
        ("cold build and push (empty uv cache)", "cold_s", "s"),
        ("cached check (capture, hash, one HEAD)", "cached_s", "s"),
    ]
    for label, key, unit in rows:
        verdict = "ok" if figures[key] <= TARGETS[key] else "OVER TARGET"
        print(f"  {label:<42} {figures[key]:7.2f} {unit:<2} (target <= {TARGETS[key]:g}) {verdict}")
    print(f"  {'forced rebuild, warm uv cache, no upload':<42} {warm:7.2f} s")
    return 0 if all(figures[k] <= TARGETS[k] for k in TARGETS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
