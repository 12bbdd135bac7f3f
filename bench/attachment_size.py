"""A message at Gmail's limit: one attachment of MB megabytes (default 18, which base64 makes
about 24.3 MB, just under the 25 MB limit), built by `channels.mime.email_bytes` and handed to
googleapiclient's media upload (`users.messages.send` with `media_body`, uploadType=multipart),
then delivered to the loopback fake Gmail through the real `GmailChannel.send`.

Prints the encoded size, the time to build the MIME, the time for the whole send (MIME, the
client's multipart body, HTTP on loopback, the fake parsing it) and the peak RSS.

    python bench/attachment_size.py [MB]
"""

from __future__ import annotations

import os
import resource
import sys
import time

from benchlib import OUT, REPO, now

sys.path.insert(0, str(REPO))

from campaignctl.attachments import DEFAULT_MAX_MESSAGE_SIZE, Attachment, human_size
from campaignctl.channels.base import Outgoing
from campaignctl.channels.mime import email_bytes
from campaignctl.config import Sender, load
from tests.fakes.gmail import FakeGmail


def main() -> int:
    mb = float(sys.argv[1]) if len(sys.argv) > 1 else 18.0
    folder = OUT / "attachment_size"
    (folder / "files").mkdir(parents=True, exist_ok=True)
    path = folder / "files" / "plans.bin"
    path.write_bytes(os.urandom(int(mb * 1024 * 1024)))
    att = Attachment("files/plans.bin", path, path.stat().st_size)
    msg = Outgoing(
        id=1,
        campaign="bench",
        step="offer",
        channel="email",
        kind="email",
        to="lead@example.com",
        text="The plans are attached.",
        claimed_at=now(),
        subject="Plans",
        attachments=(att,),
    )
    sender = Sender(name="Bench", email="bench@example.com")
    t = time.perf_counter()
    data = email_bytes(msg, sender, max_size=DEFAULT_MAX_MESSAGE_SIZE)
    build = time.perf_counter() - t
    print(
        f"attachment {human_size(att.size)} -> message {human_size(len(data))} after base64 "
        f"(limit {human_size(DEFAULT_MAX_MESSAGE_SIZE)})"
    )
    print(f"mime build: {build * 1000:.0f} ms, peak RSS so far {_peak():.0f} MB")

    fake = FakeGmail().start()
    try:
        fake.write_token_file(folder / "gmail-token.json")
        (folder / "campaigns.toml").write_text(
            '[sender]\nname = "Bench"\nemail = "bench@example.com"\n\n'
            '[channels.email]\nprovider = "gmail"\ncredentials = "gmail-token.json"\n'
            f'api_endpoint = "{fake.url}"\n'
        )
        from campaignctl.channels.gmail import open as open_gmail

        channel = open_gmail(load(folder / "campaigns.toml"), "email")
        t = time.perf_counter()
        sent = channel.send(msg)
        took = time.perf_counter() - t
        assert len(fake.uploads) == 1, "the message went through the upload URL"
        # built again by send (new boundaries and Message-ID, the same length)
        assert len(fake.uploads[0]) == len(data), "the upload is the whole message"
        print(f"gmail send through the upload URL: {took * 1000:.0f} ms (id {sent.provider_id})")
    finally:
        fake.stop()
    print(f"peak RSS: {_peak():.0f} MB (the fake Gmail runs in this process and keeps a copy)")
    return 0


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
