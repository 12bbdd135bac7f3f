"""`draft`: model-written variants through llm, with a mock model registered as an llm plugin
(the way llm tests its own plugins): no network, canned replies."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llm
import pytest
from typer.testing import Result

from campaignctl.config import load
from campaignctl.draft import MAX_SAMPLE_LEADS, merge_fields, parse_reply
from campaignctl.engine.decide import choose_variant
from campaignctl.errors import UsageError
from tests.support import add_leads, messages, open_store
from tests.support.project import UNSUBSCRIBE_URL, campaign_toml

Cli = Callable[..., Result]

CAMPAIGNS = """\
[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 1000

[channels.email]
provider = "outbox"
daily_limit = 1000

# Texts for new buyers.
[campaigns.texts]
status = "active"
description = "Welcome new buyers looking in Manila"
audience = "status == 'new'"

# The first text: short, with the opt-out.
[[campaigns.texts.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name | default('there') }}, Ana here. Reply STOP to opt out."  # short

# Mail for the same people, kept apart.
[campaigns.mail]
status = "active"

[[campaigns.mail.steps]]
name = "intro"
channel = "email"
subject = "Homes for you, {{ lead.first_name | default('friend') }}"
body = "Hello {{ lead.first_name | default('there') }}!"

# A comment after the last table.
"""

SMS_REPLY = json.dumps(
    {
        "variants": [
            {"body": "Hey {{ lead.first_name | default('there') }}! New homes. Reply STOP."},
            {"body": "{{ lead.first_name | default('Hi') }}, homes in Manila. Reply STOP to end."},
        ]
    }
)


class MockModel(llm.Model):
    """Replies with what the test queued; records the prompts it saw."""

    model_id = "campaignctl-mock"
    can_stream = False
    supports_schema = True

    def __init__(self) -> None:
        self.replies: list[str | BaseException] = []
        self.prompts: list[Any] = []

    def execute(self, prompt: Any, stream: Any, response: Any, conversation: Any) -> Iterator[str]:
        self.prompts.append(prompt)
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        yield reply


class _Plugin:
    def __init__(self, model: MockModel) -> None:
        self.model = model

    @llm.hookimpl
    def register_models(self, register: Callable[..., None]) -> None:
        register(self.model)


@pytest.fixture
def mock_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MockModel]:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm-home"))
    model = MockModel()
    llm.plugins.pm.register(_Plugin(model), name="campaignctl-mock")
    try:
        yield model
    finally:
        llm.plugins.pm.unregister(name="campaignctl-mock")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "campaigns.toml").write_text(
        campaign_toml(CAMPAIGNS, unsubscribe_url=UNSUBSCRIBE_URL)
    )
    return tmp_path


def _data(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "campaigns.toml").read_text())


def _variants(folder: Path, campaign: str) -> list[dict[str, Any]]:
    return list(_data(folder)["campaigns"][campaign]["steps"][0].get("variants", []))


def test_draft_writes_sms_variants_as_drafts_keeping_every_comment(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    before = (folder / "campaigns.toml").read_text()
    mock_model.replies.append(SMS_REPLY)
    res = cli("-C", folder, "draft", "texts", "hello", "--variants", "2", "-m", "campaignctl-mock")
    assert res.exit_code == 0, res.stderr
    assert "draft-1, draft-2" in res.stdout
    after = (folder / "campaigns.toml").read_text()
    for line in before.splitlines():  # every line, comments included, is still there
        assert line in after.splitlines()
    assert after.startswith(before.split("# Mail for the same people")[0])
    assert "[[campaigns.texts.steps.variants]]" in after
    # the new tables sit under their step, above the comment that introduces the next campaign
    assert after.index("draft-2") < after.index("# Mail for the same people")
    assert after.rstrip().endswith("# A comment after the last table.")
    assert [(v["name"], v["status"]) for v in _variants(folder, "texts")] == [
        ("draft-1", "draft"),
        ("draft-2", "draft"),
    ]
    assert cli("-C", folder, "check").exit_code == 0


def test_the_model_sees_the_step_campaign_merge_fields_and_a_few_leads_without_contacts(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    add_leads(folder, 12, status="new")
    mock_model.replies.append(SMS_REPLY)
    res = cli(
        "-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock",
        "--prompt", "Use a warm tone.",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    [prompt] = mock_model.prompts
    text = prompt.prompt
    assert "Welcome new buyers looking in Manila" in text
    assert "status == 'new'" in text
    assert "Reply STOP to opt out" in text
    assert "lead.first_name" in text
    assert "Use a warm tone." in text
    assert "exactly 2 items" in text
    assert prompt.schema is not None  # structured output, where the model supports it
    samples = [line for line in text.splitlines() if line.startswith("{") and '"N' in line]
    assert len(samples) == MAX_SAMPLE_LEADS
    assert "@ex.com" not in text
    assert "+1212555" not in text


def test_an_email_draft_is_a_subject_and_numbers_after_existing_drafts(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    mock_model.replies += [
        json.dumps({"variants": [{"subject": "A {{ lead.first_name | default('x') }}"}]}),
        # without schema support a model may wrap its JSON in words and a fence
        'Sure!\n```json\n[{"subject": "B {{ lead.first_name | default(\'x\') }}"}]\n```',
    ]
    args = ("-C", folder, "draft", "mail", "intro", "--variants", "1", "--model")
    assert cli(*args, "campaignctl-mock").exit_code == 0
    res = cli(*args, "campaignctl-mock")
    assert res.exit_code == 0, res.stderr
    variants = _variants(folder, "mail")
    assert [v["name"] for v in variants] == ["draft-1", "draft-2"]
    assert variants[1] == {
        "name": "draft-2",
        "status": "draft",
        "subject": "B {{ lead.first_name | default('x') }}",
    }


def test_draft_variants_are_never_sent_and_approve_makes_them_eligible(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    mock_model.replies.append(SMS_REPLY)
    assert cli("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    add_leads(folder, 40, status="new")
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    store = open_store(folder)
    try:
        sent = [m for m in messages(store) if m.campaign == "texts"]
    finally:
        store.close()
    assert len(sent) == 40
    assert {m.variant for m in sent} == {None}  # only drafts: the step's own text goes
    outbox = [json.loads(p.read_text()) for p in (folder / "outbox").glob("*.json")]
    assert not any("New homes" in json.dumps(m) for m in outbox)

    res = cli("-C", folder, "draft", "approve", "texts", "hello", "draft-1")
    assert res.exit_code == 0, res.stderr
    assert "status" not in _variants(folder, "texts")[0]
    assert _variants(folder, "texts")[1]["status"] == "draft"
    step = load(folder / "campaigns.toml").campaigns["texts"].steps[0]
    picks = {choose_variant(step.variants, "texts", "hello", i).name for i in range(200)}  # type: ignore[union-attr]
    assert picks == {"draft-1"}  # draft-2 is still a draft
    res = cli("-C", folder, "draft", "approve", "texts", "hello", "draft-1")
    assert res.exit_code == 2
    assert "not a draft" in res.stderr


def test_preview_shows_a_draft_only_when_named(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    mock_model.replies.append(SMS_REPLY)
    assert cli("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    plain = cli("-C", folder, "preview", "texts")
    assert plain.exit_code == 0, plain.stderr
    assert "Ana here" in plain.stdout
    shown = cli("-C", folder, "preview", "texts", "--variant", "draft-1")
    assert shown.exit_code == 0, shown.stderr
    assert "New homes" in shown.stdout
    assert "variant 'draft-1' (a draft" in shown.stdout
    missing = cli("-C", folder, "preview", "texts", "--variant", "draft-9")
    assert missing.exit_code == 2
    assert "no variant 'draft-9'" in missing.stderr


def test_draft_list_and_reject(folder: Path, cli: Cli, mock_model: MockModel) -> None:
    mock_model.replies.append(SMS_REPLY)
    assert cli("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    listed = cli("-C", folder, "draft", "list", "--format", "json")
    assert [r["variant"] for r in json.loads(listed.stdout)] == ["draft-1", "draft-2"]
    res = cli("-C", folder, "draft", "reject", "texts", "hello", "draft-1")
    assert res.exit_code == 0, res.stderr
    assert [v["name"] for v in _variants(folder, "texts")] == ["draft-2"]
    assert cli("-C", folder, "draft", "reject", "texts", "hello", "draft-2").exit_code == 0
    assert "variants" not in _data(folder)["campaigns"]["texts"]["steps"][0]
    assert "variants" not in (folder / "campaigns.toml").read_text()
    assert "# Mail for the same people" in (folder / "campaigns.toml").read_text()
    res = cli("-C", folder, "draft", "reject", "texts", "hello", "draft-1")
    assert res.exit_code == 2
    assert "no variant named 'draft-1'" in res.stderr


DROPPED_FIELD = """
[[campaigns.texts.steps.variants]]
name = "draft-1"
status = "draft"
body = "Hello! New homes. Reply STOP to opt out."
"""

DROPPED_OPTOUT = """
[[campaigns.texts.steps.variants]]
name = "draft-1"
status = "draft"
body = "Hi {{ lead.first_name | default('there') }}, new homes in Manila."
"""


def _with_variant(folder: Path, variant: str) -> str:
    text = (folder / "campaigns.toml").read_text()
    anchor = "# short\n"
    text = text.replace(anchor, anchor + variant, 1)
    (folder / "campaigns.toml").write_text(text)
    return text


def test_check_refuses_a_draft_that_drops_a_merge_field(folder: Path, cli: Cli) -> None:
    text = _with_variant(folder, DROPPED_FIELD)
    res = cli("-C", folder, "check")
    assert res.exit_code == 1
    assert "campaigns.texts.steps[0].variants[0]: draft variant 'draft-1' drops the merge " in (
        res.stdout + res.stderr
    )
    assert "{{ lead.first_name }}" in res.stdout + res.stderr
    # approving it is refused too, and leaves the file as it was
    res = cli("-C", folder, "draft", "approve", "texts", "hello", "draft-1")
    assert res.exit_code == 2
    assert "drops the merge field" in res.stderr
    assert (folder / "campaigns.toml").read_text() == text


def test_check_refuses_a_draft_that_drops_the_opt_out_wording(folder: Path, cli: Cli) -> None:
    _with_variant(folder, DROPPED_OPTOUT)
    res = cli("-C", folder, "check")
    assert res.exit_code == 1
    out = res.stdout + res.stderr
    assert "campaigns.texts.steps[0].variants[0]: draft variant 'draft-1' drops the opt-out" in out


def test_a_draft_the_model_wrote_without_a_merge_field_is_not_written(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    before = (folder / "campaigns.toml").read_bytes()
    mock_model.replies.append(json.dumps({"variants": [{"body": "New homes! Reply STOP."}]}))
    res = cli("-C", folder, "draft", "texts", "hello", "-n", "1", "-m", "campaignctl-mock")
    assert res.exit_code == 2
    assert "drops the merge field" in res.stderr
    assert (folder / "campaigns.toml").read_bytes() == before


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("I cannot help with that.", "no JSON list of variants"),
        ('{"variants": [{"body": "only one"}]}', "1 variant(s) instead of 2"),
        ('{"variants": [{"text": "a"}, {"text": "b"}]}', "variant 1 has no body"),
        ('{"variants": [{"body": "a"}, ', "no JSON list of variants"),
    ],
)
def test_malformed_model_output_writes_nothing(
    folder: Path, cli: Cli, mock_model: MockModel, reply: str, why: str
) -> None:
    before = (folder / "campaigns.toml").read_bytes()
    mock_model.replies.append(reply)
    res = cli("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    assert res.exit_code == 2
    assert why in res.stderr
    assert "nothing was written" in res.stderr
    assert "Traceback" not in res.stderr
    assert (folder / "campaigns.toml").read_bytes() == before


def test_a_missing_model_exits_2_naming_llm_models(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    res = cli("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "no-such-model")
    assert res.exit_code == 2
    assert "no-such-model" in res.stderr
    assert "llm models" in res.stderr
    assert "campaignctl[ai]" in res.stderr


def test_without_llm_installed_draft_says_how_to_install_it(
    folder: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llm", None)  # `import llm` raises ImportError
    res = cli("-C", folder, "draft", "texts", "hello", "-n", "2")
    assert res.exit_code == 2
    assert "pip install 'campaignctl[ai]'" in res.stderr


def test_a_network_error_exits_75_and_a_model_error_2(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    before = (folder / "campaigns.toml").read_bytes()
    mock_model.replies += [ConnectionError("connection refused"), RuntimeError("quota exceeded")]
    args = ("-C", folder, "draft", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    res = cli(*args)
    assert res.exit_code == 75, res.stderr
    assert "connection refused" in res.stderr
    res = cli(*args)
    assert res.exit_code == 2, res.stderr
    assert "quota exceeded" in res.stderr
    assert (folder / "campaigns.toml").read_bytes() == before


@pytest.mark.parametrize("n", ["0", "11", "-1"])
def test_variants_out_of_range_exit_2(
    folder: Path, cli: Cli, mock_model: MockModel, n: str
) -> None:
    res = cli("-C", folder, "draft", "texts", "hello", "--variants", n, "-m", "campaignctl-mock")
    assert res.exit_code == 2
    assert "1 to 10" in res.stderr
    assert mock_model.prompts == []


def test_an_unknown_step_exits_2_before_asking(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    res = cli("-C", folder, "draft", "texts", "helo", "-n", "1", "-m", "campaignctl-mock")
    assert res.exit_code == 2
    assert "no step 'helo'" in res.stderr
    assert mock_model.prompts == []


def test_merge_fields_are_read_from_the_template_tree() -> None:
    assert merge_fields(
        "{{ lead.first_name | default('x') }} {{ lead['city'] }} {% if item.price %}{% endif %}"
        " {{ sender.name }}"
    ) == {"lead.first_name", "lead.city", "item.price"}
    assert merge_fields("{{ broken") == set()


def test_parse_reply_takes_the_first_n_and_refuses_multiline_subjects() -> None:
    reply = '{"variants": [{"subject": "a"}, {"subject": "b"}, {"subject": "c"}]}'
    assert [d.subject for d in parse_reply(reply, 2, "email", "m")] == ["a", "b"]
    with pytest.raises(UsageError, match="more than one line"):
        parse_reply('{"variants": [{"subject": "a\\nb"}]}', 1, "email", "m")


def test_llm_is_imported_only_when_a_model_is_asked() -> None:
    code = (
        "import sys, campaignctl.cli, campaignctl.checks, campaignctl.draft; "
        "print('llm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_a_key_for_the_default_model_draft_exits_78_naming_llm_keys(
    folder: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm-home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    before = (folder / "campaigns.toml").read_bytes()
    res = cli("-C", folder, "draft", "texts", "hello", "-n", "1")
    assert res.exit_code == 78, res.stderr  # a person must set the key: not a usage error
    assert "hint: set its key with `llm keys set KEY`" in res.stderr
    assert (folder / "campaigns.toml").read_bytes() == before


def test_draft_new_and_options_first_are_the_same_command(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    mock_model.replies += [SMS_REPLY, SMS_REPLY]
    res = cli("-C", folder, "draft", "new", "texts", "hello", "-n", "2", "-m", "campaignctl-mock")
    assert res.exit_code == 0, res.stderr
    res = cli("-C", folder, "draft", "-n", "2", "-m", "campaignctl-mock", "texts", "hello")
    assert res.exit_code == 0, res.stderr
    assert [v["name"] for v in _variants(folder, "texts")] == [f"draft-{i}" for i in range(1, 5)]


def test_only_drafts_send_the_steps_own_text_which_it_must_have(folder: Path, cli: Cli) -> None:
    from campaignctl.config import Variant

    drafts = [Variant(name="d1", body="x", status="draft"), Variant(name="d2", status="draft")]
    assert all(choose_variant(drafts, "texts", "hello", i) is None for i in range(50))
    # A step that leaves its text to its variants needs it while they are all drafts.
    text = (folder / "campaigns.toml").read_text()
    text = text.replace("Homes for you, {{ lead.first_name | default('friend') }}", "")
    text = text.replace('subject = ""\n', "")
    text = text.replace("body = \"Hello {{ lead.first_name | default('there') }}!\"\n", "")
    text += '\n[[campaigns.mail.steps.variants]]\nname = "d"\nstatus = "draft"\n'
    text += 'subject = "Hi"\nbody = "Hello"\n'
    (folder / "campaigns.toml").write_text(text)
    res = cli("-C", folder, "check")
    assert res.exit_code == 1
    out = res.stdout + res.stderr
    assert "campaigns.mail.steps[0].subject: an email step needs a 'subject'" in out
    assert "campaigns.mail.steps[0]: a step needs 'body' or 'template': its variants are" in out


def test_a_thread_step_has_no_subject_to_draft(
    folder: Path, cli: Cli, mock_model: MockModel
) -> None:
    text = (folder / "campaigns.toml").read_text()
    text += '\n[[campaigns.mail.steps]]\nname = "again"\nchannel = "email"\ndelay = "2d"\n'
    text += 'thread = true\nbody = "Still looking?"\n'
    (folder / "campaigns.toml").write_text(text)
    res = cli("-C", folder, "draft", "mail", "again", "-n", "1", "-m", "campaignctl-mock")
    assert res.exit_code == 2
    assert "replies in the thread" in res.stderr
    assert mock_model.prompts == []
