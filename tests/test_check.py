"""`check`: config, audiences, templates and rendering for sample leads, in every format."""

import json

from campaignctl.checks import run_checks
from campaignctl.samples import BUILTIN_SAMPLES, SAMPLE_LIMIT
from campaignctl.store import Lead
from tests.support import add_leads


def edit(project, old, new):
    toml = project / "campaigns.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))


def line_of(project, needle):
    lines = (project / "campaigns.toml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_clean_file_renders_every_step_for_reachable_samples_in_the_audience(cli, project):
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output
    # the campaign's audience is status == 'new': the 'contacted' sample is not rendered
    new = [s for s in BUILTIN_SAMPLES if s["status"] == "new"]
    assert len(new) < len(BUILTIN_SAMPLES)
    emails = sum(1 for s in new if s.get("email"))
    phones = sum(1 for s in new if s.get("phone"))
    assert r.stdout.splitlines() == [
        f"campaigns.toml: 0 error(s), 0 warning(s); {emails + phones} message(s) rendered "
        f"for {len(BUILTIN_SAMPLES)} sample lead(s) (built-in)"
    ]
    assert not (project / "campaignctl.db").exists(), "check must not create the database"


def test_undefined_variable_names_key_path_line_and_lead(cli, project):
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.first_name }}!")
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    line = line_of(project, "Hi {{ lead.first_name }}!")
    nameless = [s for s in BUILTIN_SAMPLES if s.get("email") and not s.get("first_name")]
    first = nameless[0]["email"]
    more = f" (and {len(nameless) - 1} more lead(s))" if len(nameless) > 1 else ""
    assert r.stdout.splitlines()[0] == (
        f"error: campaigns.toml:{line}: campaigns.welcome.steps[0].body: "
        f"lead.first_name is undefined for lead {first}{more}"
    )
    assert r.stdout.splitlines()[-1].startswith("campaigns.toml: 1 error(s), 0 warning(s)")


def test_template_syntax_error_reports_file_and_line_in_every_format(cli, project):
    (project / "templates").mkdir()
    (project / "templates" / "hello.md.j2").write_text("Hi,\n\nok\n{% if lead.city %}\n")
    edit(
        project,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'template = "templates/hello.md.j2"',
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False
    [p] = data["problems"]
    assert p["file"] == "templates/hello.md.j2"
    assert p["line"] == 4
    assert p["path"] == "campaigns.welcome.steps[0].template"
    assert p["message"].startswith("template syntax error: ")

    r = cli("-C", project, "check", "--format", "github")
    assert r.exit_code == 1
    assert r.stdout.startswith(
        "::error file=templates/hello.md.j2,line=4::"
        "campaigns.welcome.steps[0].template: template syntax error: "
    )

    r = cli("-C", project, "check")
    assert r.stdout.startswith(
        "error: templates/hello.md.j2:4: campaigns.welcome.steps[0].template: template syntax"
    )


def test_missing_template_file_is_reported_once(cli, project):
    edit(
        project,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'template = "templates/nope.md"',
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    problems = json.loads(r.stdout)["problems"]
    assert [(p["path"], p["line"]) for p in problems] == [
        ("campaigns.welcome.steps[0].template", line_of(project, "nope.md"))
    ]
    assert "not found" in problems[0]["message"]


def test_inline_syntax_error_points_at_the_key(cli, project):
    edit(
        project, "subject = \"Hello {{ lead.first_name | default('there') }}\"", 'subject = "{{ x"'
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    [p] = json.loads(r.stdout)["problems"]
    assert (p["path"], p["line"], p["file"]) == (
        "campaigns.welcome.steps[0].subject",
        line_of(project, 'subject = "{{ x"'),
        "campaigns.toml",
    )


def test_bad_audience_is_an_error_at_its_key(cli, project):
    edit(project, "audience = \"status == 'new'\"", "audience = \"status == = 'new'\"")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    [p] = json.loads(r.stdout)["problems"]
    assert p["path"] == "campaigns.welcome.audience"
    assert p["line"] == line_of(project, "audience =")
    assert "invalid expression" in p["message"]


def test_long_sms_is_a_warning_and_exit_stays_0(cli, project):
    long_body = "Open house this Saturday! " * 14
    edit(
        project,
        "body = \"Hi {{ lead.first_name | default('there') }}, reply STOP",
        f'body = "{long_body}',
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    [p] = json.loads(r.stdout)["problems"]
    assert p["severity"] == "warning"
    assert p["path"] == "campaigns.welcome.steps[1].body"
    assert "renders into 3 SMS segments" in p["message"]
    assert "GSM-7" in p["message"]
    r = cli("-C", project, "check", "--format", "github")
    assert r.stdout.startswith("::warning file=campaigns.toml,line=")


def test_whatsapp_without_content_sid_is_a_warning(cli, project):
    toml = project / "campaigns.toml"
    toml.write_text(
        toml.read_text()
        + '\n[channels.whatsapp]\nprovider = "outbox"\n\n'
        + '[campaigns.wa]\n[[campaigns.wa.steps]]\nchannel = "whatsapp"\nbody = "Hi, STOP to end"\n'
        + '[[campaigns.wa.steps]]\nchannel = "whatsapp"\ncontent_sid = "HX1"\nbody = "Hi"\n'
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0
    problems = json.loads(r.stdout)["problems"]
    assert [(p["severity"], p["path"]) for p in problems] == [
        ("warning", "campaigns.wa.steps[0].content_sid")
    ]
    assert "approved template" in problems[0]["message"]


def test_samples_are_a_parameter(project):
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.nickname }}!")
    samples = [
        {"email": "a@example.com", "tags": [], "status": "new", "nickname": "Al"},
        {"email": "b@example.com", "tags": [], "status": "new"},
    ]
    report = run_checks(project / "campaigns.toml", samples=samples)
    assert [p.message for p in report.errors] == [
        "lead.nickname is undefined for lead b@example.com"
    ]
    assert report.samples == 2
    assert report.sample_source == "given"


def test_database_leads_are_the_samples_when_the_database_exists(cli, project):
    add_leads(project, Lead(email="zed@example.org", first_name="Zed", attrs={"city": "Cebu"}))
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.zip }}!")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["samples"] == 1
    assert data["sample_source"] == f"first {SAMPLE_LIMIT} from campaignctl.db"
    assert data["problems"][0]["message"] == "lead.zip is undefined for lead zed@example.org"


def test_unparseable_file_stops_before_rendering(cli, project):
    (project / "campaigns.toml").write_text("[settings\n")
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert r.stdout.startswith("error: campaigns.toml:1: TOML syntax error")
    assert r.stdout.splitlines()[-1] == "campaigns.toml: 1 error(s), 0 warning(s)"


def test_example_project_checks_clean(cli, example_project):
    r = cli("-C", example_project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is True
    assert data["rendered"] > 0


def test_audience_that_fails_on_a_lead_names_the_lead(project):
    edit(project, "audience = \"status == 'new'\"", 'audience = "status + 1 > 0"')
    report = run_checks(project / "campaigns.toml")
    assert report.errors == []
    [p] = [w for w in report.warnings if w.path == "campaigns.welcome.audience"]
    assert p.message.startswith(
        f"{len(BUILTIN_SAMPLES)} sample lead(s) skipped by the audience: "
        "cannot evaluate 'status + 1 > 0'"
    )
    assert p.message.endswith(f"for lead {BUILTIN_SAMPLES[0]['email']}")


def test_audience_failing_on_some_sample_leads_warns_as_send_skips_them(cli, project):
    """`lead.budget|int` fails on leads without a budget: `send` skips them (exit 0), so
    `check` warns and exits 0; a syntax error in the expression stays an error."""
    edit(project, "audience = \"status == 'new'\"", 'audience = "budget|int <= 400000"')
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output
    warning = next(x for x in r.stdout.splitlines() if "campaigns.welcome.audience" in x)
    assert warning.startswith("warning: ")
    assert f": {len(BUILTIN_SAMPLES)} sample lead(s) skipped by the audience: " in warning
    assert "for lead " in warning

    edit(project, 'audience = "budget|int <= 400000"', 'audience = "budget|int <= "')
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert "error: campaigns.toml:" in r.stdout
    assert "campaigns.welcome.audience" in r.stdout


def test_every_variant_is_rendered_for_every_sample_lead(cli, project):
    """A variant of tiny weight is sent to someone some day: check renders it for each sample."""
    edit(
        project,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"\n",
        "body = \"Hi {{ lead.first_name | default('there') }}!\"\n\n"
        "[[campaigns.welcome.steps.variants]]\n"
        'name = "A"\n'
        "weight = 1\n\n"
        "[[campaigns.welcome.steps.variants]]\n"
        'name = "B"\n'
        "weight = 0.0001\n"
        'body = "{{ lead.no_such_field }}"\n',
    )
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    line = line_of(project, "{{ lead.no_such_field }}")
    assert r.stdout.startswith(
        f"error: campaigns.toml:{line}: campaigns.welcome.steps[0].variants[1].body: "
        "lead.no_such_field is undefined for lead "
    )


def test_check_leads_csv_renders_for_every_row(cli, example_project):
    """CI's use: `check --leads sample.csv` renders every step for the CSV's valid rows."""
    csv = example_project / "sample.csv"
    csv.write_text(
        "First Name,Email,Phone,tags\n"
        "Ana,ana@example.com,0917 123 4567,buyer\n"
        ",nofirst@example.com,,buyer\n"
        "Bad,not-an-email,,buyer\n"
    )
    r = cli("-C", example_project, "check", "--leads", csv, "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["samples"] == 2  # the row with no valid contact is not a sample
    assert data["sample_source"] == str(csv)


def test_check_leads_csv_undefined_field_fails(cli, example_project):
    toml = example_project / "campaigns.toml"
    toml.write_text(
        toml.read_text().replace(
            "Just checking you saw my note, {{ lead.first_name | default('there') }}.",
            "Just checking you saw my note, {{ lead.first_name }}.",
        )
    )
    csv = example_project / "sample.csv"
    csv.write_text("Email,tags\nnoname@example.com,buyer\n")
    r = cli("-C", example_project, "check", "--leads", csv)
    assert r.exit_code == 1
    assert "campaigns.welcome.steps[1].body" in r.stdout
    assert "noname@example.com" in r.stdout


def test_check_leads_missing_file_is_usage_error(cli, example_project):
    r = cli("-C", example_project, "check", "--leads", example_project / "nope.csv")
    assert r.exit_code == 2
    assert r.stderr.startswith("campaignctl: error: ")
    assert "nope.csv" in r.stderr.splitlines()[0]


# ---------------------------------------------------------------- issue 9


def problems(r):
    return [(p["severity"], p["path"], p["message"]) for p in json.loads(r.stdout)["problems"]]


def test_outbox_path_that_is_a_file_is_an_error(cli, project):
    """Issue 9 #14: works as root too (a file is never a folder, whoever asks)."""
    (project / "outbox").write_text("not a folder")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    found = [p for p in problems(r) if p[0] == "error"]
    assert [p[1] for p in found] == ["channels.email.path", "channels.sms.path"]
    assert "outbox cannot take messages: it is a file, not a folder" in found[0][2]
    assert not (project / "outbox").is_dir()


def test_outbox_path_under_a_file_is_an_error_and_check_creates_nothing(cli, project):
    edit(project, "daily_limit = 50", 'daily_limit = 50\npath = "plain/sub/outbox"')
    (project / "plain").write_text("x")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    [(_, path, message)] = [p for p in problems(r) if p[0] == "error"]
    assert path == "channels.sms.path"
    assert message.endswith("it cannot be created: plain is a file")
    edit(project, 'path = "plain/sub/outbox"', 'path = "new/sub/outbox"')
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    assert not (project / "new").exists()


def test_audience_selects_the_samples_a_step_is_rendered_for(cli, project):
    """Issue 9 #16: a campaign for leads with a first name may print it bare."""
    edit(project, "audience = \"status == 'new'\"", 'audience = "first_name is defined"')
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.first_name }}!")
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output
    named = [s for s in BUILTIN_SAMPLES if s.get("first_name")]
    emails = sum(1 for s in named if s.get("email"))
    phones = sum(1 for s in named if s.get("phone"))
    assert r.stdout.splitlines() == [
        f"campaigns.toml: 0 error(s), 0 warning(s); {emails + phones} message(s) rendered "
        f"for {len(BUILTIN_SAMPLES)} sample lead(s) (built-in)"
    ]


def test_audience_that_no_sample_matches_is_a_warning(cli, project):
    edit(project, "audience = \"status == 'new'\"", "audience = \"status == 'vip'\"")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    assert problems(r) == [
        (
            "warning",
            "campaigns.welcome.audience",
            "no sample lead matches the audience; nothing rendered",
        )
    ]
    assert json.loads(r.stdout)["rendered"] == 0
    r = cli("-C", project, "check")
    line = line_of(project, "audience = ")
    assert r.stdout.startswith(f"warning: campaigns.toml:{line}: campaigns.welcome.audience: ")


def test_unknown_key_and_render_error_in_one_run(cli, project):
    """Issue 9 #17: the typo does not hide the undefined variable, and suggests the key."""
    edit(project, 'delay = "2d"', 'dealy = "2d"')
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.first_nme }}!")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    found = problems(r)
    assert [(s, p) for s, p, _ in found] == [
        ("error", "campaigns.welcome.steps[1].dealy"),
        ("error", "campaigns.welcome.steps[0].body"),
    ]
    assert found[0][2].endswith("; did you mean 'delay'?")
    assert found[1][2].startswith("lead.first_nme is undefined")


def test_unknown_key_in_the_step_itself_still_renders_that_step(cli, project):
    edit(project, 'name = "hello"', 'name = "hello"\nsubjet = "x"')
    edit(project, "Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.first_nme }}!")
    r = cli("-C", project, "check", "--format", "json")
    found = problems(r)
    assert [p for _, p, _ in found] == [
        "campaigns.welcome.steps[0].subjet",
        "campaigns.welcome.steps[0].body",
    ]
    assert "did you mean 'subject'?" in found[0][2]


def test_unknown_channel_key_suggests_the_provider_key(cli, project):
    edit(project, "daily_limit = 50", "dayly_limit = 50")
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert "channels.sms.dayly_limit: unknown key" in r.stdout
    assert "did you mean 'daily_limit'?" in r.stdout


def test_email_without_postal_address_is_a_warning(cli, project):
    """Issue 9 #21: CAN-SPAM."""
    edit(project, 'postal_address = "12 Ayala Ave, Makati City"\n', "")
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    [(severity, path, message)] = problems(r)
    assert (severity, path) == ("warning", "sender.postal_address")
    assert "'welcome' send email without the sender's postal address" in message
    assert "CAN-SPAM" in message


def test_first_sms_without_opt_out_wording_is_a_warning(cli, project):
    """Issue 9 #21: the first SMS must say how to stop; later ones need not."""
    edit(
        project,
        "Hi {{ lead.first_name | default('there') }}, reply STOP to opt out.",
        "Hi {{ lead.first_name | default('there') }}, see you at the end of the week.",
    )
    toml = project / "campaigns.toml"
    toml.write_text(
        toml.read_text()
        + '\n[[campaigns.welcome.steps]]\nname = "again"\nchannel = "sms"\nbody = "Hi again"\n'
    )
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 0, r.output
    [(severity, path, message)] = problems(r)
    assert (severity, path) == ("warning", "campaigns.welcome.steps[1].body")
    assert message.startswith("the campaign's first sms message has no opt-out wording")
    r = cli("-C", project, "check")
    line = line_of(project, "see you at the end")
    assert f"campaigns.toml:{line}: campaigns.welcome.steps[1].body" in r.stdout


def test_opt_out_wording_in_other_languages_passes(cli, project):
    for wording in ("Responde BAJA para no recibir más", "Répondez ARRET", "Text END for no more"):
        text = (project / "campaigns.toml").read_text()
        start = text.index('body = "', text.index('name = "nudge"'))
        end = text.index("\n", start)
        (project / "campaigns.toml").write_text(text[:start] + f'body = "{wording}"' + text[end:])
        r = cli("-C", project, "check", "--format", "json")
        assert problems(r) == [], wording
    text = (project / "campaigns.toml").read_text()
    (project / "campaigns.toml").write_text(text.replace("END for", "end for"))
    r = cli("-C", project, "check", "--format", "json")
    assert [p for _, p, _ in problems(r)] == ["campaigns.welcome.steps[1].body"]
