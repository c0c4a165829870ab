"""Templates: sandboxed, StrictUndefined, checked before any model loads."""

from __future__ import annotations

import pytest

from textsynth.config import load_pipeline
from textsynth.errors import TemplateError
from textsynth.pipeline import prepare


def test_renders_chat_messages_with_taxonomy_values(project):
    prep = prepare(project / "pipelines" / "sentiment.yaml", n=6)
    ex = prep.planned[0]
    messages = prep.messages[ex.id]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert ex.attributes["product"] in messages[1]["content"]
    assert ex.label in messages[1]["content"]


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
