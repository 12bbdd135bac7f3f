"""Loopback fakes of the providers, for tests that drive the real client libraries.

`FakeGmail` (Gmail API + OAuth token endpoint), `FakeTwilio` (Messages and Accounts API) and
`FakeSmtp` (aiosmtpd) speak the providers' wire formats on 127.0.0.1, record what they receive,
and can be told to fail. Their pytest fixtures (`fake_gmail`,
`fake_twilio`, `fake_smtp`, and `*_project` folders whose campaign file points at them) are in
`tests/support/fixtures.py`, registered for every test by `tests/conftest.py`.
"""

from tests.fakes.gmail import FakeGmail
from tests.fakes.smtp import FakeSmtp
from tests.fakes.twilio import FakeTwilio

__all__ = ["FakeGmail", "FakeSmtp", "FakeTwilio"]
