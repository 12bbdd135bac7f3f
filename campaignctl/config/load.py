"""Finding and reading the campaign file; `load()` is what commands call."""

from __future__ import annotations

import os
from pathlib import Path

from campaignctl.config.model import CONFIG_ENV, DEFAULT_CONFIG, Config
from campaignctl.config.validate import validate_text
from campaignctl.errors import CampaignctlError, ConfigError


def find_config(path: Path | None) -> Path:
    """The campaign file to use: --config, else $CAMPAIGNCTL_CONFIG, else ./campaigns.toml."""
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(DEFAULT_CONFIG)


def read_text(path: Path) -> str:
    """The campaign file's text, or a one-line error that says how to get one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CampaignctlError(
            f"{path}: no campaign file here",
            "run `campaignctl init` to create one, or point to it with --config FILE or -C DIR",
        ) from None
    except IsADirectoryError:
        raise CampaignctlError(
            f"{path}: is a directory, not a campaign file",
            "pass the file itself with --config FILE",
        ) from None
    except OSError as exc:
        raise CampaignctlError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CampaignctlError(
            f"{path}: not UTF-8 text (byte {exc.start})", "save the campaign file as UTF-8"
        ) from None


def load(path: Path | None = None) -> Config:
    """The validated campaign file; raises ConfigError listing every error (warnings pass)."""
    path = find_config(path)
    cfg, problems = validate_text(read_text(path), path)
    errors = [p for p in problems if p.severity == "error"]
    if errors or cfg is None:
        raise ConfigError(errors)
    return cfg
