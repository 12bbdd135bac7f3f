"""One root error and the exit codes the CLI maps errors to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes; the README lists them and what cron should make of each."""

    OK = 0
    #: Some messages failed permanently, or `check` found errors.
    FAILED = 1
    #: Usage error, or a configuration error in a command other than `check`.
    USAGE = 2
    #: Temporary: another run holds the lock, or a provider is unreachable. Try again later.
    TEMPFAIL = 75
    #: A person must act: credentials missing, refused or revoked (`campaignctl auth ...`).
    #: EX_CONFIG of sysexits.h; cron wrappers and systemd must not treat it as success.
    CONFIG = 78
    #: Stopped at once by a second Ctrl-C or SIGTERM: 128 + SIGINT, the shell's convention.
    INTERRUPTED = 130


class CampaignctlError(Exception):
    """Root of every error campaignctl reports to a user.

    ``message`` is one line naming the file, key path, lead or channel concerned;
    ``hint`` is an optional second line, usually the command that fixes it.
    """

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CampaignctlError):
    """A command was called with arguments that cannot work."""


class NotFoundError(CampaignctlError):
    """A named campaign, step, channel or lead does not exist."""


@dataclass(frozen=True)
class Problem:
    """One finding about the campaign file, a template or a sample lead."""

    path: str
    message: str
    severity: str = "error"  # "error" | "warning"
    line: int | None = None
    file: Path | None = None

    def location(self) -> str:
        where = str(self.file) if self.file else ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return where

    def __str__(self) -> str:
        head = self.location()
        key = f"{self.path}: " if self.path else ""
        return f"{head}: {key}{self.message}" if head else f"{key}{self.message}"


class ConfigError(CampaignctlError):
    """The campaign file cannot be used. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], hint: str | None = None) -> None:
        self.problems = problems
        first = problems[0] if problems else Problem("", "invalid campaign file")
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}", hint or "run `campaignctl check` to list every problem")


class SetupError(CampaignctlError):
    """A person must set something up first: a signing key, an optional package, a `[server]`
    table. Exit 78, like refused credentials: retrying will not help."""

    exit_code = ExitCode.CONFIG


def missing_extra(package: str, extra: str, what: str) -> SetupError:
    """The error for an optional dependency that is not installed, naming the extra."""
    return SetupError(
        f"{what} needs the {package!r} package, which is not installed",
        f"pip install 'campaignctl[{extra}]'",
    )


class LockHeldError(CampaignctlError):
    """Another process holds the lock this command needs."""

    exit_code = ExitCode.TEMPFAIL


class ProviderUnavailableError(CampaignctlError):
    """A provider could not be reached for this pass (refused credentials are a
    `channels.base.CredentialsError`, exit 78)."""

    exit_code = ExitCode.TEMPFAIL
