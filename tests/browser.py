"""Opening a page in a real headless browser (Debian's ``chromium``, installed by
``tests/install-system-packages``), as a person would, for the report and dashboard tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Marks a test that needs the browser: skipped where it is not installed.
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs chromium (tests/install-system-packages)"
)


@dataclass
class Loaded:
    """What the browser showed of a page: its console lines, and its DOM after the scripts
    ran (with ``dom=True``)."""

    console: list[str]
    dom: str
    stderr: str

    @property
    def problems(self) -> list[str]:
        """Console lines that report an error or a refused resource."""
        return [
            line for line in self.console if "error" in line.lower() or "refused" in line.lower()
        ]


def load(
    url: str, *, screenshot: Path | None = None, dom: bool = False, budget_ms: int = 5000
) -> Loaded:
    """Load ``url`` in headless chromium for ``budget_ms`` of page time (scripts and timers
    run), then take a screenshot to ``screenshot`` and/or dump the DOM."""
    outputs = [f"--screenshot={screenshot}"] if screenshot is not None else []
    if dom:
        outputs.append("--dump-dom")
    browser = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,1000", f"--virtual-time-budget={budget_ms}",
         "--enable-logging=stderr", *outputs, url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    return Loaded(console, browser.stdout, browser.stderr)
