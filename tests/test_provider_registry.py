"""A new provider is one module: registered, it is checked, validated and sent through."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import Result

from campaignctl.channels import registry
from campaignctl.channels.base import Outgoing, Reconciled, Reconciliation, Sent
from campaignctl.config import ChannelBase, Config, validate_text
from campaignctl.errors import CampaignctlError, ExitCode

Cli = Callable[..., Result]

# ---------------------------------------------------------------- the whole provider

#: What the provider "sent" (its loopback: a real one would talk to an API here).
LEDGER: list[Outgoing] = []


class LedgerChannel(ChannelBase):
    provider: Literal["ledger"]
    account: str  # a required key of its own
    prefix: str = "ledger"


class Ledger:
    def __init__(self, name: str, kind: str, prefix: str) -> None:
        self.name, self.kind, self.prefix = name, kind, prefix

    def send(self, msg: Outgoing) -> Sent:
        LEDGER.append(msg)
        return Sent(provider_id=f"{self.prefix}-{msg.id}")

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        return Reconciliation(Reconciled.UNKNOWN)

    def close(self) -> None:
        pass


def _open(cfg: Config, name: str) -> Ledger:
    ch = cfg.channels[name]
    assert isinstance(ch, LedgerChannel)
    return Ledger(name, cfg.channel_kind(name), ch.prefix)


def _problems(ch: LedgerChannel) -> Iterator[registry.Problem]:
    if ch.prefix == "":
        yield "prefix", "an empty prefix makes every provider id the message id", "warning"


def _auth(cfg: Config, name: str, values: Mapping[str, Any], say: Callable[[str], None]) -> None:
    ch = cfg.channels[name]
    assert isinstance(ch, LedgerChannel)
    if values["key"] != ch.account:
        err = CampaignctlError(f"ledger channel {name!r}: key refused", "ask the ledger's owner")
        err.exit_code = ExitCode.CONFIG
        raise err
    out = values["out"] or Path("ledger.key")
    say(f"ledger channel {name!r}: key accepted {values['times']} time(s)")
    if not values["dry_run"]:
        cfg.resolve(str(out)).write_text(values["key"])
        say(f"saved to {out}")


#: `campaignctl auth ledger`: declared as data, the plugin imports no typer.
AUTH = registry.Auth(
    help="Check a ledger key and keep it.\n\nThe key is the channel's account name.",
    run=_auth,
    options=(
        registry.AuthOption("key", "--key", "The ledger key.", required=True, metavar="KEY"),
        registry.AuthOption("times", "--times", "How often.", type=int, default=1, min=1, max=3),
        registry.AuthOption("dry_run", "--dry-run", "Keep nothing.", type=bool, default=False),
        registry.AuthOption("out", "--out", "Where to keep the key.", type=Path, metavar="FILE"),
    ),
)

PROVIDER = registry.Provider(
    name="ledger",
    config=LedgerChannel,
    kinds=("sms",),
    open=_open,
    cannot_read="the ledger keeps what it sends; nothing comes back",
    problems=_problems,
    auth=AUTH,
)

# ---------------------------------------------------------------- the tests

CAMPAIGN = """\
[settings]
timezone = "UTC"
default_region = "US"

[channels.notes]
provider = "ledger"
account = "acme"
prefix = "{prefix}"

[campaigns.hello]
status = "active"

[[campaigns.hello.steps]]
name = "hi"
channel = "notes"
body = "Hi {{{{ lead.first_name | default('there') }}}}, reply STOP to opt out."
"""

LEADS = "first_name,phone\nAna,+12125550100\nBen,+12125550101\n"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[list[Outgoing]]:
    # a campaign file read before: the union built then must take the new provider in
    validate_text('[channels.email]\nprovider = "outbox"\n', tmp_path / "campaigns.toml")
    registry.register(PROVIDER)
    LEDGER.clear()
    try:
        yield LEDGER
    finally:
        registry.unregister("ledger")


def _project(folder: Path, prefix: str = "ledger") -> Path:
    (folder / "campaigns.toml").write_text(CAMPAIGN.format(prefix=prefix))
    (folder / "leads.csv").write_text(LEADS)
    return folder


def test_a_registered_provider_is_checked_and_sends(tmp_path: Path, cli: Cli, ledger) -> None:
    folder = _project(tmp_path)
    r = cli("-C", folder, "check")
    assert r.exit_code == 0, r.output
    r = cli("-C", folder, "leads", "import", folder / "leads.csv")
    assert r.exit_code == 0, r.output
    r = cli("-C", folder, "send")
    assert r.exit_code == 0, r.output
    assert sorted((m.to, m.text, m.kind) for m in ledger) == [
        ("+12125550100", "Hi Ana, reply STOP to opt out.", "sms"),
        ("+12125550101", "Hi Ben, reply STOP to opt out.", "sms"),
    ]
    assert "summary: sent 2" in r.stdout
    r = cli("-C", folder, "sync")
    assert r.exit_code == 0, r.output
    assert "nothing comes back" in r.stdout


def test_its_keys_and_rules_are_its_own(tmp_path: Path, cli: Cli, ledger) -> None:
    folder = _project(tmp_path, prefix="")
    text = (folder / "campaigns.toml").read_text()
    typo = text.replace('account = "acme"', 'account = "acme"\nacount = "acme"')
    (folder / "campaigns.toml").write_text(typo)
    r = cli("-C", folder, "check")
    assert r.exit_code != 0
    assert "channels.notes.acount: unknown key" in r.output
    assert "did you mean 'account'?" in r.output
    assert "channels.notes.prefix: an empty prefix" in r.output


def test_unknown_provider_lists_the_registered_ones(tmp_path: Path, cli: Cli, ledger) -> None:
    folder = _project(tmp_path)
    text = (folder / "campaigns.toml").read_text()
    (folder / "campaigns.toml").write_text(text.replace('"ledger"', '"ledgr"'))
    r = cli("-C", folder, "check")
    assert r.exit_code != 0
    assert (
        "channels.notes: unknown provider 'ledgr': use one of gmail, smtp, twilio, outbox, ledger"
        in r.output
    )
    with pytest.raises(registry.UnknownProviderError) as info:
        registry.get("ledgr")
    assert info.value.message.endswith("use one of gmail, smtp, twilio, outbox, ledger")


def test_unregistered_it_is_unknown_again(tmp_path: Path, cli: Cli) -> None:
    folder = _project(tmp_path)
    r = cli("-C", folder, "check")
    assert r.exit_code != 0
    assert "unknown provider 'ledger': use one of gmail, smtp, twilio, outbox" in r.output


def test_its_auth_declaration_is_a_campaignctl_auth_command(
    tmp_path: Path, cli: Cli, ledger
) -> None:
    folder = _project(tmp_path)
    r = cli("-C", folder, "auth", "--help")
    assert r.exit_code == 0, r.output
    assert "ledger  Check a ledger key and keep it." in r.stdout
    r = cli("-C", folder, "auth", "ledger", "--help")
    assert r.exit_code == 0, r.output
    assert "The key is the channel's account name." in r.stdout
    assert [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  -")] == [
        *("--key", "--times", "--dry-run", "--out", "--channel", "-h,"),
    ]
    assert "--key KEY" in r.stdout
    assert "--out FILE" in r.stdout
    assert "[default: 1; 1<=x<=3]" in r.stdout
    words = " ".join(r.stdout.split())  # help wraps at the terminal's width
    assert "--channel <str> Ledger channel to use (default: the first ledger channel)." in words

    r = cli("-C", folder, "auth", "ledger", "--key", "acme", "--times", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout == "ledger channel 'notes': key accepted 2 time(s)\nsaved to ledger.key\n"
    assert (folder / "ledger.key").read_text() == "acme"
    r = cli("-C", folder, "auth", "ledger", "--key", "acme", "--dry-run", "--channel", "notes")
    assert r.exit_code == 0, r.output
    assert "saved" not in r.stdout

    # the run's own error, with its exit code and hint
    r = cli("-C", folder, "auth", "ledger", "--key", "nope")
    assert r.exit_code == 78
    assert r.stderr.splitlines() == [
        "campaignctl: error: ledger channel 'notes': key refused",
        "hint: ask the ledger's owner",
    ]
    # --channel is resolved by the CLI: a channel of another provider is a usage error
    text = (folder / "campaigns.toml").read_text()
    (folder / "campaigns.toml").write_text(
        text + '\n[channels.mail]\nprovider = "outbox"\nkind = "email"\n'
    )
    r = cli("-C", folder, "auth", "ledger", "--key", "acme", "--channel", "mail")
    assert r.exit_code == 2
    assert "channel 'mail' uses provider 'outbox', not 'ledger'" in r.stderr

    # usage errors, said the campaignctl way: a required option missing, a value out of range
    r = cli("-C", folder, "auth", "ledger")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "campaignctl: error: Missing option '--key'.",
        "hint: run `campaignctl auth ledger --help`",
    ]
    r = cli("-C", folder, "auth", "ledger", "--key", "acme", "--times", "4")
    assert r.exit_code == 2
    assert "Invalid value for '--times': Input should be less than or equal to 3" in r.stderr


def test_an_unregistered_providers_auth_command_is_gone(tmp_path: Path, cli: Cli) -> None:
    registry.register(PROVIDER)
    try:
        assert cli("auth", "ledger", "--help").exit_code == 0
    finally:
        registry.unregister("ledger")
    r = cli("auth", "ledger", "--help")
    assert r.exit_code == 2
    assert "No such command 'ledger'" in r.stderr


def test_the_built_ins_come_through_the_entry_point_door() -> None:
    assert list(registry.providers())[:4] == ["gmail", "smtp", "twilio", "outbox"]
    for ref in registry.BUILTINS:
        name, value = ref.split(" = ")
        assert registry.get(name) is registry._load(EntryPoint(name, value, registry.GROUP))


def test_an_installed_plugins_entry_point_is_found(monkeypatch, tmp_path: Path) -> None:
    """What `pip install campaignctl-ledger` would add: an entry point of the group."""
    plugin = EntryPoint("ledger", f"{__name__}:PROVIDER", registry.GROUP)

    def installed(group: str) -> list[EntryPoint]:
        return [plugin] if group == registry.GROUP else []

    monkeypatch.setattr(registry, "entry_points", installed)
    registry.providers.cache_clear()
    registry.config_union.cache_clear()
    try:
        assert registry.get("ledger") is PROVIDER
        cfg, problems = validate_text(
            CAMPAIGN.format(prefix="x"), tmp_path / "campaigns.toml", remainder=True
        )
        assert problems == []
        assert cfg is not None
        assert cfg.channel_kind("notes") == "sms"
    finally:
        monkeypatch.undo()
        registry.providers.cache_clear()
        registry.config_union.cache_clear()
    assert "ledger" not in registry.providers()


def test_loading_and_checking_import_no_sdk_and_help_loads_no_provider(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support import MINIMAL_TOML, REPO

    (tmp_path / "campaigns.toml").write_text(MINIMAL_TOML)  # outbox channels only
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from campaignctl.cli import app\n"
        "help = CliRunner().invoke(app, ['--help'])\n"
        "assert help.exit_code == 0, help.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('campaignctl.channels')))\n"
        f"r = CliRunner().invoke(app, ['-C', {str(tmp_path)!r}, 'check'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'twilio', 'googleapiclient', 'google_auth_oauthlib', 'httplib2', 'smtplib'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_a_broken_plugin_stops_only_the_files_that_name_it(monkeypatch, tmp_path: Path) -> None:
    """An installed plugin whose module fails to import is left out: other campaign files
    load as before, and one that names it says why it is missing."""
    broken = EntryPoint("fax", "campaignctl_fax_plugin_not_installed:PROVIDER", registry.GROUP)

    def installed(group: str) -> list[EntryPoint]:
        return [broken] if group == registry.GROUP else []

    monkeypatch.setattr(registry, "entry_points", installed)
    registry.providers.cache_clear()
    registry.config_union.cache_clear()
    try:
        assert "fax" not in registry.providers()
        _cfg, problems = validate_text(
            CAMPAIGN.format(prefix="x"), tmp_path / "campaigns.toml", remainder=True
        )
        assert [p.message for p in problems if "fax" in p.message] == []
        text = CAMPAIGN.format(prefix="x").replace('provider = "ledger"', 'provider = "fax"')
        _cfg, problems = validate_text(text, tmp_path / "campaigns.toml", remainder=True)
        (problem,) = [p for p in problems if p.path == "channels.notes"]
        why = "provider 'fax' (campaignctl_fax_plugin_not_installed:PROVIDER) cannot be loaded"
        assert why in problem.message
        assert "reinstall the package that provides it" in problem.message
    finally:
        monkeypatch.undo()
        registry.providers.cache_clear()
        registry.config_union.cache_clear()
