"""`check`: config, audiences, templates and rendering for sample leads, in every format."""

import json

from campaignctl.checks import run_checks
from campaignctl.config import load
from campaignctl.samples import BUILTIN_SAMPLES, SAMPLE_LIMIT
from campaignctl.store import Lead, Store


def edit(project, old, new):
    toml = project / "campaigns.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))


def line_of(project, needle):
    lines = (project / "campaigns.toml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_clean_file_renders_every_step_for_reachable_samples(cli, project):
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output
    emails = sum(1 for s in BUILTIN_SAMPLES if s.get("email"))
    phones = sum(1 for s in BUILTIN_SAMPLES if s.get("phone"))
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
        + '[campaigns.wa]\n[[campaigns.wa.steps]]\nchannel = "whatsapp"\nbody = "Hi"\n'
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
    cfg = load(project / "campaigns.toml")
    store = Store.for_config(cfg)
    with store.write() as s:
        s.add(Lead(email="zed@example.org", first_name="Zed", attrs={"city": "Cebu"}))
    store.close()
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
    [p] = report.errors
    assert p.path == "campaigns.welcome.audience"
    assert p.message.startswith("cannot evaluate 'status + 1 > 0'")
    assert p.message.endswith(f"for lead {BUILTIN_SAMPLES[0]['email']}")


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
