"""`preview`: the message exactly as it would be sent, for a chosen or matching lead."""

import email

from campaignctl.store import Lead
from tests.support import add_leads


def headers(stdout):
    """The header block of an email preview, parsed as RFC 5322."""
    block = stdout.split("\n\n", 1)[0]
    lines = [line for line in block.splitlines() if not line.startswith("#")]
    return email.message_from_string("\n".join(lines) + "\n\n")


def test_email_preview_shows_headers_text_and_html_part(cli, example_project):
    r = cli("-C", example_project, "preview", "welcome")
    assert r.exit_code == 0, r.output
    h = headers(r.stdout)
    assert h["From"] == '"Ana Cruz, Sunrise Realty" <ana@sunrise.example>'
    # the first built-in sample in the audience, with her name
    assert h["To"] == "María Santos <maria.santos@example.com>"
    assert h["Subject"] == "Welcome, María!"
    assert h["Message-ID"] == "<generated-when-sent@sunrise.example>"
    assert h["List-Unsubscribe"] == "<mailto:ana@sunrise.example?subject=unsubscribe>"
    assert h["In-Reply-To"] is None
    assert "Hi María,\n\nThanks for reaching out to **Sunrise Realty**." in r.stdout
    assert "12 Ayala Ave, Makati City, PH" in r.stdout
    assert "and an HTML part of " in r.stdout
    assert r.stdout.startswith("# welcome / hello: step 1 of 3, email via channel 'email'\n")


def test_thread_step_replies_in_the_first_emails_thread(cli, example_project):
    r = cli("-C", example_project, "preview", "welcome", "--step", "follow-up")
    assert r.exit_code == 0, r.output
    h = headers(r.stdout)
    assert h["Subject"] == "Re: Welcome, María!"
    assert h["In-Reply-To"] == "<message-id-of-hello@sunrise.example>"
    assert h["References"] == h["In-Reply-To"]
    assert "HTML part" not in r.stdout  # an inline body is text only


def test_sms_preview_shows_encoding_and_segments(cli, example_project):
    r = cli("-C", example_project, "preview", "welcome", "--step", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "To: +639171234567" in lines
    assert "Hi María, Ana from Sunrise here. Reply STOP to opt out." in lines
    assert lines[-1] == "# UCS-2, 55 UTF-16 units, 1 segment (UCS-2 because of 'í')"


def test_lead_from_the_database_by_normalised_phone(cli, project):
    add_leads(
        project,
        Lead(email="one@example.com", phone="+639171234567", first_name="Uno", status="new"),
    )
    r = cli("-C", project, "preview", "welcome", "--step", "nudge", "--lead", "0917 123 4567")
    assert r.exit_code == 0, r.output
    assert "Hi Uno, reply STOP to opt out." in r.stdout
    assert "(from the database)" in r.stdout
    assert r.stdout.splitlines()[-1] == "# GSM-7, 30 septets, 1 segment"


def test_first_database_lead_in_the_audience_is_the_default(cli, project):
    add_leads(
        project,
        Lead(email="old@example.com", first_name="Old", status="contacted"),
        Lead(email="new@example.com", first_name="Neu", status="new"),
    )
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code == 0, r.output
    assert headers(r.stdout)["To"] == "Neu <new@example.com>"
    assert "Hi Neu!" in r.stdout


def test_lead_by_email_is_case_insensitive(cli, project):
    add_leads(project, Lead(email="ana.b@example.com", first_name="Ana"))
    r = cli("-C", project, "preview", "welcome", "--lead", "Ana.B@Example.COM")
    assert r.exit_code == 0, r.output
    assert headers(r.stdout)["To"] == "Ana <ana.b@example.com>"


def test_unknown_lead_is_exit_2(cli, project):
    add_leads(project, Lead(email="someone@example.com"))
    r = cli("-C", project, "preview", "welcome", "--lead", "nobody@example.com")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == (
        "campaignctl: error: no lead with email nobody@example.com "
        "in the database or the built-in samples"
    )


def test_lead_that_is_neither_email_nor_phone_is_exit_2(cli, project):
    r = cli("-C", project, "preview", "welcome", "--lead", "Ana Cruz")
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert (
        lines[0] == "campaignctl: error: --lead 'Ana Cruz': not an email address or a phone number"
    )
    assert lines[1].startswith("hint: give the lead's email")


def test_lead_without_the_channels_contact_is_exit_2(cli, project):
    r = cli(
        "-C", project, "preview", "welcome", "--step", "nudge", "--lead", "ligaya.cruz@example.com"
    )
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == (
        "campaignctl: error: lead ligaya.cruz@example.com has no phone number: "
        "step 'nudge' (sms) cannot reach them"
    )


def test_unknown_campaign_and_step_say_did_you_mean(cli, project):
    r = cli("-C", project, "preview", "welcom")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == (
        "campaignctl: error: campaigns.toml: no campaign named 'welcom'; did you mean 'welcome'?"
    )
    r = cli("-C", project, "preview", "welcome", "--step", "nudg")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == (
        "campaignctl: error: campaigns.toml: campaign 'welcome' has no step 'nudg'; "
        "did you mean 'nudge'?"
    )
    assert "Traceback" not in r.output


def test_whatsapp_preview_shows_the_template(cli, project):
    toml = project / "campaigns.toml"
    toml.write_text(
        toml.read_text()
        + '\n[channels.wa]\nprovider = "twilio"\nfrom = "whatsapp:+15005550006"\n\n'
        + '[campaigns.w]\n[[campaigns.w.steps]]\nchannel = "wa"\ncontent_sid = "HX1"\n'
        + "content_variables = { 1 = \"{{ lead.first_name | default('there') }}\" }\n"
        + 'body = "Hi"\n'
    )
    r = cli("-C", project, "preview", "w")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "To: whatsapp:+639171234567" in lines
    assert "From: whatsapp:+15005550006" in lines
    assert "Content-SID: HX1" in lines
    assert "Content-Variable 1: María" in lines


def use_template(project, name):
    """Point the first step of the `project` fixture at template file `name`."""
    toml = project / "campaigns.toml"
    old = "body = \"Hi {{ lead.first_name | default('there') }}!\""
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, f'template = "{name}"'))


def test_template_syntax_error_is_one_line_with_file_and_line(cli, project):
    (project / "t.md").write_text("Hello\n{{ lead.first_name | }}\n")
    use_template(project, "t.md")
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code == 2
    assert r.stderr.startswith(
        "campaignctl: error: t.md:2: campaigns.welcome.steps[0].template: template syntax error:"
    )
    assert "Traceback" not in r.output


def test_missing_template_file_is_one_line(cli, project):
    use_template(project, "gone.md")
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0].startswith("campaignctl: error: campaigns.toml:")
    assert "campaigns.welcome.steps[0].template: template file 'gone.md' not found" in r.stderr
