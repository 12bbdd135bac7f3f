"""What every route of the web side is given: the campaign file, the store, the links and the
clock. Built once per `serve` process (or per test)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from campaignctl.config import Config
from campaignctl.errors import SetupError
from campaignctl.store import Store, utcnow
from campaignctl.web.links import Links
from campaignctl.web.writer import Writer

if TYPE_CHECKING:
    from campaignctl.store.conn import Transaction

T = TypeVar("T")

#: Requests larger than this are refused with 413: Twilio's webhooks and an unsubscribe POST
#: are a few KiB.
MAX_BODY = 64 * 1024

log = logging.getLogger("campaignctl.serve")


@dataclass
class Web:
    cfg: Config
    store: Store
    links: Links
    #: The time, for every record a request writes; tests pass their own.
    clock: Callable[[], datetime] = field(default=utcnow)
    max_body: int = MAX_BODY
    #: Every write a request makes goes through it (group commit: see `web.writer`).
    writer: Writer = field(init=False)

    def __post_init__(self) -> None:
        self.writer = Writer(self.store)

    def write(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn(session)` in a write transaction shared with other requests' writes;
        its result once committed (see `web.writer`)."""
        return self.writer.write(fn)

    def close(self) -> None:
        self.writer.close()

    @classmethod
    def open(
        cls,
        cfg: Config,
        store: Store,
        environ: Mapping[str, str],
        clock: Callable[[], datetime] = utcnow,
    ) -> Web:
        """SetupError (exit 78) when the campaign file has no `[server]` or its keys are not
        in `environ`."""
        links = Links.for_config(cfg, environ)
        if links is None:
            raise SetupError(
                f"{cfg.path}: no [server] table: `serve` needs its public_base_url and secret_env",
                'add [server] with public_base_url = "https://..." (docs/web.md)',
            )
        return cls(cfg, store, links, clock)
