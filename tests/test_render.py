"""Templates: markdown and HTML parts, variants, undefined values, file and line of errors."""

from collections import Counter
from pathlib import Path

import pytest

from campaignctl.config import Variant, load
from campaignctl.errors import ConfigError
from campaignctl.render import Renderer, RenderError, choose_variant, html_to_text
from campaignctl.samples import BUILTIN_SAMPLES
from tests.support import MINIMAL_TOML

HEAD = MINIMAL_TOML.split("[campaigns.welcome]")[0] + "[campaigns.c]\n"

MARIA = BUILTIN_SAMPLES[0]  # María Santos, Makati, buyer
NAMELESS = BUILTIN_SAMPLES[1]  # jreyes@example.com: no first name, no city


def project(tmp_path: Path, steps: str, files: dict[str, str] | None = None):
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "campaigns.toml").write_text(HEAD + steps)
    cfg = load(tmp_path / "campaigns.toml")
    return cfg, Renderer(cfg)


def render(r, cfg, lead, index=0):
    return r.render("c", index, cfg.campaigns["c"].steps[index], lead)


def test_markdown_template_gives_html_and_text_with_footer(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "email"\nsubject = "Hi {{ lead.first_name }}"\n'
        'template = "t/welcome.md.j2"\n',
        {"t/welcome.md.j2": "Hi **{{ lead.first_name }}**,\n\n- one\n- two\n"},
    )
    out = render(r, cfg, MARIA)
    assert out.subject == "Hi María"
    assert "<strong>María</strong>" in (out.html or "")
    assert "<li>one</li>" in (out.html or "")
    assert out.text.startswith("Hi **María**,\n\n- one\n- two\n\n-- \n")
    assert "Ana Cruz, 12 Ayala Ave, Makati City" in out.text
    assert "12 Ayala Ave" in (out.html or "")


def test_html_template_is_autoescaped_and_gets_a_text_part(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "email"\nsubject = "x"\ntemplate = "t.html.j2"\n',
        {"t.html.j2": "<p>Hello {{ lead.first_name }}</p><p>Second<br>line</p>"},
    )
    lead = dict(MARIA, first_name="<b>Bo</b>")
    out = render(r, cfg, lead)
    assert "&lt;b&gt;Bo&lt;/b&gt;" in (out.html or "")
    assert out.text.startswith("Hello <b>Bo</b>\nSecond\nline\n")


def test_html_to_text():
    assert html_to_text("<h1>Title</h1><p>a  b</p><ul><li>x</li><li>y</li></ul>") == (
        "Title\na b\nx\ny\n"
    )


def test_default_works_for_missing_values(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "sms"\n'
        "body = \"Hi {{ lead.first_name | default('there') }} in "
        "{{ lead.city | default('Manila') }}\"\n",
    )
    assert render(r, cfg, NAMELESS).text == "Hi there in Manila"
    assert render(r, cfg, MARIA).text == "Hi María in Makati"


def test_undefined_is_an_error_naming_key_path_and_lead(tmp_path):
    cfg, r = project(
        tmp_path, '[[campaigns.c.steps]]\nchannel = "sms"\nbody = "Hi {{ lead.first_name }}"\n'
    )
    with pytest.raises(RenderError) as info:
        render(r, cfg, NAMELESS)
    err = info.value
    assert err.path == "campaigns.c.steps[0].body"
    assert err.lead == "jreyes@example.com"
    assert str(err) == (
        "campaigns.c.steps[0].body: lead.first_name is undefined for lead jreyes@example.com"
    )
    assert "default(" in (err.hint or "")


def test_undefined_in_a_template_file_gives_its_file_and_line(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "email"\nsubject = "x"\ntemplate = "t.md"\n',
        {"t.md": "Hello,\n\nAbout {{ lead.budget }} pesos.\n"},
    )
    with pytest.raises(RenderError) as info:
        render(r, cfg, MARIA)
    assert info.value.file == tmp_path / "t.md"
    assert info.value.line == 3
    assert info.value.reason == "lead.budget is undefined"


def test_template_syntax_error_gives_file_and_line(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "email"\nsubject = "x"\ntemplate = "t.md.j2"\n',
        {"t.md.j2": "Hello\n\nfine\n{{ lead.city | }}\n"},
    )
    with pytest.raises(RenderError) as info:
        r.compile_step("c", 0, cfg.campaigns["c"].steps[0])
    assert info.value.file == tmp_path / "t.md.j2"
    assert info.value.line == 4
    assert "template syntax error" in info.value.detail
    assert info.value.path == "campaigns.c.steps[0].template"


def test_template_paths_are_relative_to_the_campaign_file_and_stay_inside_it(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "body.txt").write_text("Hi {{ lead.first_name }}")
    sub = tmp_path / "project"
    (sub / "t").mkdir(parents=True)
    (sub / "t" / "body.txt").write_text("Hi {{ lead.first_name }}")
    toml = sub / "campaigns.toml"
    toml.write_text(HEAD + '[[campaigns.c.steps]]\nchannel = "sms"\ntemplate = "t/body.txt"\n')
    cfg = load(toml)
    assert render(Renderer(cfg), cfg, MARIA).text == "Hi María"
    toml.write_text(toml.read_text().replace("t/body.txt", "../shared/body.txt"))
    with pytest.raises(ConfigError, match="leads out of the campaign file's directory"):
        load(toml)


def test_columns_named_like_dict_methods_are_the_leads_values(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "sms"\n'
        "body = \"{{ lead.items }} {{ lead.label | default('none') }}\"\n",
    )
    assert render(r, cfg, dict(MARIA, items="2BR condo")).text == "2BR condo none"


def test_context_has_sender_campaign_and_step(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nname = "first"\nchannel = "sms"\n'
        'body = "{{ sender.name }}/{{ campaign.name }}/{{ step.name }}/{{ step.index }}"\n',
    )
    assert render(r, cfg, MARIA).text == "Ana Cruz/c/first/1"


def test_thread_step_leaves_the_subject_to_the_channel(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nchannel = "email"\nsubject = "Hello"\nbody = "a"\n'
        '[[campaigns.c.steps]]\nchannel = "email"\nthread = true\nbody = "b"\n',
    )
    assert render(r, cfg, MARIA, 1).subject is None


def test_variants_are_deterministic_and_weighted():
    variants = [Variant(name="a", weight=3), Variant(name="b", weight=1)]
    picks = [choose_variant(variants, "c", "s", i) for i in range(4000)]
    assert picks == [choose_variant(variants, "c", "s", i) for i in range(4000)]
    counts = Counter(v.name for v in picks if v)
    assert 0.72 < counts["a"] / 4000 < 0.78
    # another step shuffles leads independently
    other = [choose_variant(variants, "c", "t", i) for i in range(4000)]
    assert picks != other
    assert choose_variant([], "c", "s", 1) is None


def test_variant_bodies_render_for_the_chosen_variant(tmp_path):
    cfg, r = project(
        tmp_path,
        '[[campaigns.c.steps]]\nname = "s"\nchannel = "sms"\nbody = "default"\n'
        '[[campaigns.c.steps.variants]]\nname = "a"\nbody = "A {{ lead.first_name }}"\n'
        '[[campaigns.c.steps.variants]]\nname = "b"\nbody = "B {{ lead.first_name }}"\n',
    )
    step = cfg.campaigns["c"].steps[0]
    outs = {r.render("c", 0, step, MARIA, lead_key=i).text for i in range(40)}
    assert outs == {"A María", "B María"}
    one = r.render("c", 0, step, MARIA, lead_key=7)
    assert one.variant in ("a", "b")
    assert one.text == f"{str(one.variant).upper()} María"


def test_whatsapp_content_variables_are_rendered(tmp_path):
    (tmp_path / "campaigns.toml").write_text(
        HEAD.replace("[campaigns.c]", '[channels.whatsapp]\nprovider = "outbox"\n[campaigns.c]')
        + '[[campaigns.c.steps]]\nchannel = "whatsapp"\ncontent_sid = "HX123"\nbody = "fallback"\n'
        'content_variables = { 1 = "{{ lead.first_name }}", 2 = "{{ lead.city }}" }\n'
    )
    cfg = load(tmp_path / "campaigns.toml")
    out = render(Renderer(cfg), cfg, MARIA)
    assert out.kind == "whatsapp"
    assert out.content_sid == "HX123"
    assert out.content_variables == {"1": "María", "2": "Makati"}
