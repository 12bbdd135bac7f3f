"""Provider SDKs load only when their channel is used: `campaignctl --help` stays fast."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO


def test_cli_and_seam_import_no_provider_sdk():
    code = (
        "import sys, campaignctl.cli, campaignctl.channels;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'twilio', 'googleapiclient', 'google_auth_oauthlib', 'httplib2', 'smtplib'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert out.stdout.strip() == "[]"
