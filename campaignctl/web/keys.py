"""Where the signing keys come from: the environment variables `server.secret_env` names."""

from __future__ import annotations

from collections.abc import Mapping

from campaignctl.config import Config
from campaignctl.errors import SetupError

#: The shortest key accepted: 16 characters of `secrets.token_urlsafe` carry 96 bits.
MIN_KEY_LENGTH = 16

GENERATE = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


def key_problem(cfg: Config, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(what is wrong, the command that fixes it) about `[server]`'s keys, or None."""
    server = cfg.server
    if server is None:
        return None
    for name in server.secret_env.split(","):
        value = environ.get(name, "")
        if not value:
            return (
                f"server.secret_env: environment variable {name} is not set: links in emails "
                "are signed with it",
                f"export {name}=$({GENERATE}) (keep it: changing it breaks sent links)",
            )
        if len(value) < MIN_KEY_LENGTH:
            return (
                f"server.secret_env: environment variable {name} holds {len(value)} "
                f"characters; a signing key needs at least {MIN_KEY_LENGTH}",
                f"export {name}=$({GENERATE})",
            )
    return None


def signing_keys(cfg: Config, environ: Mapping[str, str]) -> list[str]:
    """The keys, first the one that signs; SetupError (exit 78: a person must act) when
    `[server]` is missing or a key is not set."""
    if cfg.server is None:
        raise SetupError(
            f"{cfg.path}: no [server] table: `serve` needs its public_base_url and secret_env",
            'add [server] with public_base_url = "https://..." (docs/web.md)',
        )
    problem = key_problem(cfg, environ)
    if problem:
        raise SetupError(f"{cfg.path}: {problem[0]}", problem[1])
    return [environ[name] for name in cfg.server.secret_env.split(",")]
