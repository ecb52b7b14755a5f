"""The user's configuration: one TOML file, readable and editable with ``starburst config``.

Settings a user chooses live at the top level; what ``starburst setup`` created lives in the
``[aws]`` table. The file is in the user's config folder (``STARBURST_CONFIG_DIR`` overrides).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .errors import ConfigurationError
from .store.local import make_private_folder, replace_private_file


def config_dir() -> Path:
    """The folder of the configuration file."""
    chosen = os.environ.get("STARBURST_CONFIG_DIR")
    if chosen:
        return Path(chosen)
    import platformdirs

    return Path(platformdirs.user_config_dir("starburst", appauthor=False))


def config_path() -> Path:
    """The configuration file."""
    return config_dir() / "config.toml"


@dataclass
class Config:
    """The configuration file's contents."""

    settings: dict[str, Any] = field(default_factory=dict)
    aws: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Config:
        """Read the file; a missing file is an empty configuration."""
        path = config_path()
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(
                f"{path} is not valid TOML ({exc}); fix it by hand or delete it and run "
                "`starburst setup` again"
            ) from exc
        aws = raw.pop("aws", {})
        if not isinstance(aws, dict):
            raise ConfigurationError(
                f"{path}: `aws` must be a table (`[aws]`, written by `starburst setup`), not "
                f"{aws!r}; remove that line and run `starburst setup` again"
            )
        return cls(settings=raw, aws=aws)

    def save(self) -> Path:
        """Write the file (atomically) and return its path."""
        path = config_path()
        make_private_folder(path.parent)
        document = dict(self.settings)
        if self.aws:
            document["aws"] = self.aws
        replace_private_file(path, tomli_w.dumps(document))
        return path

    def get(self, key: str, default: Any = None) -> Any:
        """A user setting, or ``default``."""
        return self.settings.get(key, default)

    def set(self, key: str, value: str) -> Any:
        """Set a user setting from its text form; return the checked value."""
        from .settings import SETTINGS, checked

        if key not in SETTINGS or not SETTINGS[key].in_config_file:
            known = ", ".join(name for name, s in SETTINGS.items() if s.in_config_file)
            raise ConfigurationError(f"unknown setting {key!r}; the settings are: {known}")
        parsed = checked(key, value, f"{key} ", from_text=True)
        self.settings[key] = parsed
        return parsed

    def unset(self, key: str) -> None:
        """Remove a user setting."""
        self.settings.pop(key, None)
