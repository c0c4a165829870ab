"""Templates: sandboxed, StrictUndefined, checked before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from textsynth.errors import ConfigError, TemplateError
from textsynth.pipeline import prepare
from textsynth.pipeline_file import load_pipeline


def test_renders_chat_messages_with_taxonomy_values(project):
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=6)
    ex = prep.planned[0]
    messages = prep.messages[ex.id]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert ex.attributes["product"] in messages[1]["content"]
    assert ex.label in messages[1]["content"]
    assert messages[2]["content"] == f"The {ex.attributes['product']}"  # the reply's opening


def test_echo_filter_compares_with_the_user_message_not_the_opening(project):
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=3)
    ex = prep.planned[0]
    assert prep.steps["text"].instruction(ex) == prep.messages[ex.id][1]["content"]


def test_an_opening_that_renders_empty_sends_no_assistant_message(project):
    only_positive = '{% if label == "positive" %}The {{ product }}{% endif %}'
    (project / "prompts" / "review_reply.jinja").write_text(only_positive)
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=6)
    for ex in prep.planned:
        roles = [m["role"] for m in prep.messages[ex.id]]
        assert roles == (["system", "user", "assistant"] if ex.label == "positive" else ["system", "user"])


def test_a_json_step_cannot_open_its_reply(project):
    path = project / "pipelines" / "qa.yaml"
    text = path.read_text()
    assert "output: json" in text
    opened = "user: qa_user.jinja\n      assistant: qa_user.jinja"
    path.write_text(text.replace("user: qa_user.jinja", opened))
    with pytest.raises(ConfigError, match="a JSON step is decoded to its schema from the first token"):
        load_pipeline(path)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("Write about {{ colour }}.", "undefined variable 'colour'"),
        ("Write {% if %}", "syntax error"),
        ("{{ label.__class__.__mro__ }}", "sandbox"),
        ("{{ ''.__class__.__subclasses__() }}", "sandbox"),
    ],
)
def test_bad_templates_fail_before_model_load(project, body, match):
    (project / "prompts" / "review_user.jinja").write_text(body)
    with pytest.raises(TemplateError, match=match):
        prepare(project / "pipelines" / "sentiment.yaml", n=3)


def test_missing_template_names_the_dirs(project):
    (project / "prompts" / "review_user.jinja").unlink()
    with pytest.raises(TemplateError, match="'review_user.jinja' not found"):
        prepare(project / "pipelines" / "sentiment.yaml", n=3)


def test_template_path_cannot_escape_prompt_dir(project):
    path = project / "pipelines" / "sentiment.yaml"
    path.write_text(path.read_text().replace("user: review_user.jinja", "user: ../pipelines/sentiment.yaml"))
    with pytest.raises(TemplateError, match="not found"):
        prepare(path, n=3)


def test_invalid_utf8_template(project):
    (project / "prompts" / "review_user.jinja").write_bytes(b"Write \xff\xfe {{ label }}")
    with pytest.raises(TemplateError, match="UTF-8"):
        prepare(project / "pipelines" / "sentiment.yaml", n=3)


def test_template_shas_change_with_content(project):
    path = project / "pipelines" / "sentiment.yaml"
    before = prepare(path, n=3).templates.shas
    (project / "prompts" / "review_user.jinja").write_text("Write a {{ label }} review of a {{ product }}.")
    after = prepare(path, n=3).templates.shas
    assert before["review_user.jinja"] != after["review_user.jinja"]
    assert before["review_system.jinja"] == after["review_system.jinja"]
    assert load_pipeline(path).templates.user == "review_user.jinja"


def _validate(project) -> subprocess.CompletedProcess:
    from .conftest import ROOT

    path = project / "pipelines" / "sentiment.yaml"
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("{% include 'review_user.jinja' %} {{ label }}", "without end"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }} {{ label }}", "without end"),
        ("{% for i in range(10**12) %}x{% endfor %} {{ label }}", "range(): more than"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}{{ label }}",
            "range()",
        ),
        ("{{ 'x' * 10**8 }} {{ label }}", "repeated value longer"),
        ("{% for i in range(5000) %}{{ 'y' * 100 }}{% endfor %} {{ label }}", "output longer than"),
        ("{{ 2 ** (10**8) }} {{ label }}", "exponent"),
    ],
)
def test_exhausting_templates_are_one_line(project, body, match):
    (project / "prompts" / "review_user.jinja").write_text(body)
    line = _one_line_error(_validate(project))
    assert "review_user.jinja" in line and "sandbox" in line and match in line


def test_symlinked_template_cannot_leave_prompts(project):
    user = project / "prompts" / "review_user.jinja"
    user.unlink()
    user.symlink_to(project / "pipelines" / "sentiment.yaml")
    line = _one_line_error(_validate(project))
    assert "'review_user.jinja' not found" in line and "may not leave the prompt directories" in line


def test_symlinked_include_cannot_leave_prompts(project):
    (project / "prompts" / "outside.jinja").symlink_to(project / "pipelines" / "sentiment.yaml")
    (project / "prompts" / "review_user.jinja").write_text("{% include 'outside.jinja' %} {{ label }}")
    line = _one_line_error(_validate(project))
    assert "includes 'outside.jinja', which is not in the prompt directories" in line


def test_symlink_inside_prompts_still_works(project):
    user = project / "prompts" / "review_user.jinja"
    user.rename(project / "prompts" / "real_user.jinja")
    user.symlink_to(project / "prompts" / "real_user.jinja")
    proc = _validate(project)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_instruction_masks_inserted_material_but_not_the_instruction(project):
    """The echo filter's reference: a passage may be quoted by an answer, the instruction may not."""
    from textsynth.quality.filters import EchoFilter
    from textsynth.records import Record
    from textsynth.templates import PromptTemplates

    pipeline = load_pipeline(project / "pipelines" / "qa.yaml")
    prep = prepare(project / "pipelines" / "qa.yaml", n=4)
    step = pipeline.steps[0]
    templates = PromptTemplates(pipeline, [project / "prompts"], step.templates)
    ex = prep.planned[0]
    prompt = templates.render(ex)[-1]["content"]
    instruction = templates.instruction(ex)
    passage = prompt.split("Passage: ", 1)[1].split("\n", 1)[0]
    assert len(passage.split()) >= 20 and passage not in instruction
    assert "can be answered from this passage" in instruction
    assert templates.render(ex)[-1]["content"] == prompt  # masking is only for the instruction
    quote = Record(id="a", label="x", attributes={}, text=" ".join(passage.split()[:12]))
    asked = f"Write one question that asks for {ex.attributes['question_type']} and can be answered."
    echo = Record(id="b", label="x", attributes={}, text=asked)
    EchoFilter({"a": instruction, "b": instruction}).run([quote, echo])
    assert quote.status != "rejected"
    assert echo.reasons == ["prompt_echo"]
    assert EchoFilter({"a": prompt}).check(quote) == "prompt_echo"  # what the unmasked prompt did


def test_guidance_prompts_name_every_other_label_or_a_seeded_draw(project):
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=30)
    picked: set[int] = set()
    for ex in prep.planned:
        others = [lab.name for lab in prep.pipeline.labels if lab.name != ex.label]
        every = prep.templates.render_negatives(ex)
        users = [next(m["content"] for m in msgs if m["role"] == "user") for msgs in every]
        assert [f"Write your {o} review" in u for u, o in zip(users, others)] == [True] * len(others)
        one = prep.templates.render_negatives(ex, 1)
        assert len(one) == 1 and one[0] in every and one == prep.templates.render_negatives(ex, 1)
        picked.add(every.index(one[0]))
    assert picked == {0, 1}  # the draw follows each record's seed, not one fixed label


def test_a_variable_guarded_by_is_defined_passes_validation(project):
    template = project / "prompts" / "review_user.jinja"
    template.write_text(template.read_text() + "{% if mood is defined %} Mood: {{ mood }}.{% endif %}")
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=6)
    assert all("Mood" not in json.dumps(m) for m in prep.messages.values())
    template.write_text(template.read_text() + " {{ weather }}")  # unguarded: still an error
    with pytest.raises(TemplateError, match="undefined variable 'weather'"):
        prepare(project / "pipelines" / "sentiment.yaml", n=6)
