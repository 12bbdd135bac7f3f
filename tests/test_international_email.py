"""issue 9 #4 and #5 through Gmail and the outbox: an address outside ASCII, and `To` with a name.

`josé@example.org` is accepted by `leads import`; every email channel must then write
`To: "José Muñoz, Jr." <josé@example.org>` with the addr-spec as raw UTF-8 (RFC 6532), never
RFC 2047 encoded. (SMTP, which also needs SMTPUTF8, is in test_send_e2e_smtp.py.)
"""

from __future__ import annotations

import base64
from email import message_from_string, policy
from pathlib import Path

from tests.fakes.gmail import FakeGmail
from tests.support import Cli, gmail_folder

CSV = 'email,first_name,last_name\njosé@example.org,José,"Muñoz, Jr."\nmaria@example.com,Maria,\n'


def _import(cli: Cli, folder: Path) -> None:
    (folder / "leads.csv").write_text(CSV, encoding="utf-8")
    res = cli("-C", folder, "leads", "import", folder / "leads.csv")
    assert res.exit_code == 0, res.stderr
    assert "│    2 │        2 │" in res.stdout, res.stdout  # read 2, inserted 2


def _check_jose(raw: bytes) -> None:
    head = raw.split(b"\n\n", 1)[0]
    assert '"José Muñoz, Jr." <josé@example.org>'.encode() in head
    assert b"=?utf-8?b?am9zw6lA" not in head
    em = message_from_string(raw.decode("utf-8"), policy=policy.default)
    (to,) = em["To"].addresses
    assert (to.addr_spec, to.display_name) == ("josé@example.org", "José Muñoz, Jr.")


def test_gmail_raw_carries_a_utf8_address(cli: Cli, tmp_path: Path, fake_gmail: FakeGmail):
    folder = gmail_folder(tmp_path, fake_gmail)
    _import(cli, folder)
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 2, failed 0" in res.stdout
    assert sorted(m.to for m in fake_gmail.sent) == ["josé@example.org", "maria@example.com"]
    bodies = [r.json() for r in fake_gmail.api_requests if r.path.endswith("/messages/send")]
    raws = [base64.urlsafe_b64decode(b["raw"] + "=" * (-len(b["raw"]) % 4)) for b in bodies]
    (jose,) = [r for r in raws if not r.isascii()]
    _check_jose(jose)
    (maria,) = [r for r in raws if r.isascii()]
    assert b"To: Maria <maria@example.com>" in maria


def test_outbox_eml_carries_a_utf8_address(cli: Cli, project: Path):
    _import(cli, project)
    res = cli("-C", project, "send")
    assert res.exit_code == 0, res.stderr
    emls = sorted(project.rglob("*.eml"))
    assert len(emls) == 2
    (jose,) = [p.read_bytes() for p in emls if not p.read_bytes().isascii()]
    _check_jose(jose)
