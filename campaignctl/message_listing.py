"""`messages list`: every message with its lead, state, reason, provider id, attempts and times,
filtered, and streamed from the database so a million rows take the memory of a few thousand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from campaignctl.errors import NotFoundError, UsageError
from campaignctl.store.messages import LISTING_COLUMNS

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Store

#: The columns of each row, in order (csv header, json keys, table columns): the store's.
COLUMNS = LISTING_COLUMNS
_TIMES = tuple(i for i, c in enumerate(COLUMNS) if c.endswith("_at"))


@dataclass
class MessageListing:
    """A checked `messages list` query; iterate it (once) for its rows, as tuples of `COLUMNS`
    with times as ISO 8601 UTC text. The database is read while the rows are consumed."""

    store: Store
    campaign: str | None
    step: str | None
    status: str | None
    lead_id: int | None
    since: datetime | None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        from campaignctl.store import messages

        with self.store.reads() as r:
            for row in messages.listing(
                r,
                campaign=self.campaign,
                step=self.step,
                state=self.status,
                lead_id=self.lead_id,
                since=self.since,
            ):
                if any(row[i] is not None for i in _TIMES):
                    values = list(row)
                    for i in _TIMES:
                        t = values[i]
                        if t is not None:
                            values[i] = t.isoformat().replace("+00:00", "Z")
                    row = tuple(values)
                yield row


def list_messages(
    cfg: Config,
    store: Store,
    *,
    campaign: str | None = None,
    step: str | None = None,
    status: str | None = None,
    lead: str | None = None,
    since: str | None = None,
) -> MessageListing:
    """Check the filters (an unknown campaign or lead, a bad date or status: a usage error
    before any row is written) and return the listing to iterate.

    `lead` is an email or a phone in any format; `since` a date (`2026-03-02`, midnight in
    settings.timezone) or a date and time (`2026-03-02T09:30`, in settings.timezone unless it
    names its offset): messages changed at or after it.
    """
    from campaignctl.store import MESSAGE_STATES

    if status is not None and status not in MESSAGE_STATES:
        raise UsageError(
            f"--status {status!r}: not a message status; use one of {', '.join(MESSAGE_STATES)}"
        )
    after = parse_since(since, cfg.settings.timezone) if since is not None else None
    lead_id = None
    if campaign is not None or lead is not None:
        lead_id = _check(cfg, store, campaign, lead)
    return MessageListing(store, campaign, step, status, lead_id, after)


def parse_since(text: str, timezone: str) -> datetime:
    """`2026-03-02` (midnight) or `2026-03-02T09:30` in `timezone`, or with its own offset."""
    tz = ZoneInfo(timezone)
    value = text.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=tz)
        t = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM "
            f"(in {timezone} unless an offset such as +08:00 is given)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=tz)


def _check(cfg: Config, store: Store, campaign: str | None, lead: str | None) -> int | None:
    from campaignctl.config import did_you_mean
    from campaignctl.leads.lookup import find_lead_id
    from campaignctl.store import messages

    with store.reads() as r:
        if campaign is not None and campaign not in cfg.campaigns:
            known = set(messages.campaign_names(r))
            if campaign not in known:
                raise NotFoundError(
                    f"no campaign named {campaign!r} in {cfg.path} or the database"
                    + did_you_mean(campaign, sorted(known | set(cfg.campaigns))),
                    "campaignctl campaign list shows the campaigns",
                )
        if lead is None:
            return None
        return find_lead_id(r, lead, cfg.settings.default_region)
