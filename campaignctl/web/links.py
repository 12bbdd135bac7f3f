"""The URLs campaignctl hands out when `[server]` is configured: one-click unsubscribe, tracked
clicks and opens, Twilio's status callback. Pure: no web framework, no database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from campaignctl.config import Config
from campaignctl.web.keys import signing_keys
from campaignctl.web.tokens import UNDO_FOR, Purpose, Signer

UNSUBSCRIBE_PATH = "/u/"
CLICK_PATH = "/c/"
OPEN_PATH = "/o/"
TWILIO_STATUS_PATH = "/twilio/status"
TWILIO_INBOUND_PATH = "/twilio/inbound"


class Links:
    """Builds (and reads back) the signed links below `base_url`."""

    def __init__(self, base_url: str, signer: Signer) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer

    @classmethod
    def for_config(cls, cfg: Config, environ: Mapping[str, str]) -> Links | None:
        """None when the campaign file has no `[server]`; SetupError (exit 78) when it has
        one whose keys are not in the environment."""
        if cfg.server is None:
            return None
        return cls(cfg.server.public_base_url, Signer(signing_keys(cfg, environ)))

    # ------------------------------------------------------------------ building

    def unsubscribe(self, lead_id: int, channel: str) -> str:
        """The lead's one-click unsubscribe URL for `channel` (RFC 8058)."""
        token = self.signer.dumps(Purpose.UNSUBSCRIBE, [lead_id, channel])
        return f"{self.base_url}{UNSUBSCRIBE_PATH}{token}"

    def click(self, message_id: int, url: str) -> str:
        """A redirect to `url`, recorded as a click on the message; signed over both, so it
        is never an open redirect."""
        token = self.signer.dumps(Purpose.CLICK, [message_id, url])
        return f"{self.base_url}{CLICK_PATH}{token}"

    def open_pixel(self, message_id: int) -> str:
        token = self.signer.dumps(Purpose.OPEN, [message_id])
        return f"{self.base_url}{OPEN_PATH}{token}.gif"

    def undo_token(self, lead_id: int, channel: str, optout_at: datetime, now: datetime) -> str:
        """The token of the unsubscribe page's undo: it names the opt-out it takes back (the
        lead, the channel, the opt-out's `created_at`), and expires `UNDO_FOR` after `now`.
        A form field, never a link: it is handed out only in the page that unsubscribed."""
        payload = [lead_id, channel, optout_at.isoformat()]
        return self.signer.dumps_at(Purpose.UNDO, payload, now)

    def twilio_status(self) -> str:
        return f"{self.base_url}{TWILIO_STATUS_PATH}"

    def twilio_inbound(self) -> str:
        return f"{self.base_url}{TWILIO_INBOUND_PATH}"

    # ------------------------------------------------------------------ reading back

    def read_unsubscribe(self, token: str) -> tuple[int, str] | None:
        """(lead id, channel) of a valid unsubscribe token, else None."""
        p = self.signer.loads(Purpose.UNSUBSCRIBE, token)
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and isinstance(p[1], str):
            return p[0], p[1]
        return None

    def read_undo(self, token: str, now: datetime) -> tuple[int, str, datetime] | None:
        """(lead id, channel, the opt-out's created_at) of a valid undo token signed no longer
        than `UNDO_FOR` before `now` (the caller's clock), else None."""
        found = self.signer.loads_timed(Purpose.UNDO, token)
        if found is None:
            return None
        p, signed_at = found
        if now - signed_at > UNDO_FOR:
            return None
        if not (
            isinstance(p, list)
            and len(p) == 3
            and isinstance(p[0], int)
            and isinstance(p[1], str)
            and isinstance(p[2], str)
        ):
            return None
        try:
            optout_at = datetime.fromisoformat(p[2])
        except ValueError:
            return None
        if optout_at.tzinfo is None:
            return None
        return p[0], p[1], optout_at

    def read_click(self, token: str) -> tuple[int, str] | None:
        """(message id, URL) of a valid click token, else None."""
        p = self.signer.loads(Purpose.CLICK, token)
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and isinstance(p[1], str):
            return p[0], p[1]
        return None

    def read_open(self, token: str) -> int | None:
        """The message id of a valid open-pixel token (without `.gif`), else None."""
        p = self.signer.loads(Purpose.OPEN, token)
        if isinstance(p, list) and len(p) == 1 and isinstance(p[0], int):
            return p[0]
        return None
