"""Filters on hand-made texts: each one rejects what it is for and keeps a normal review."""

from __future__ import annotations

import json

import pytest

from textsynth.quality.filters import (
    EchoFilter,
    FormFilter,
    LanguageFilter,
    LengthFilter,
    PiiFilter,
    RefusalFilter,
    RepetitionFilter,
    build_filters,
    find_pii,
)
from textsynth.quality_config import FilterConfig
from textsynth.records import Record

from .conftest import REAL_DATA

GOOD = "The blender crushes ice in seconds and cleans up easily. Worth every penny."


def rec(text: str, rid: str = "r1") -> Record:
    return Record(id=rid, label="positive", attributes={}, text=text)


@pytest.mark.parametrize(
    ("stage", "text", "reason"),
    [
        (LengthFilter(3, 20), "Great.", "too_short"),
        (LengthFilter(3, 5), GOOD, "too_long"),
        (RefusalFilter(), "As an AI language model, I cannot write reviews.", "refusal"),
        (RefusalFilter(), "I'm sorry, but I can't write a review that promotes a product.", "refusal"),
        (RefusalFilter(), "Unfortunately, I cannot fulfill this request.", "refusal"),
        (FormFilter(), "Sure! Here is a review of the blender.", "assistant_chatter"),
        (FormFilter(), "Here's a positive review of the blender: it works.", "assistant_chatter"),
        (FormFilter(), "Dear Marcus, the blender you sold me is great.", "letter"),
        (FormFilter(), "Hi there. I love my new phone and use it every day.", "letter"),
        (FormFilter(), "Great chair.\n\nBest regards,\nAnna", "letter"),
        (FormFilter(), "The reviewer is pleased with the wireless headphones.", "meta_description"),
        (FormFilter(), "The review is written in a mixed tone about the laptop.", "meta_description"),
        (FormFilter(), "This is a positive review, written from a customer perspective.", "meta_description"),
        (FormFilter(), "I just tried [Product Name] and it is great.", "placeholder"),
        (
            EchoFilter({"r1": "Write one new sentence. Do not copy the examples. Output only the sentence."}),
            "The soup was cold. Do not copy the examples.",
            "prompt_echo",
        ),
        (
            EchoFilter({"r1": "Write one positive customer review of a blender written by a busy parent"}),
            "Write one positive customer review of a blender written by a busy parent please.",
            "prompt_echo",
        ),
        (EchoFilter({}), "Great blender {{ product }} works.", "template_leak"),
        (
            LanguageFilter("en"),
            "Ce mixeur est vraiment génial, je le recommande à tout le monde.",
            "wrong_language:fr",
        ),
        (
            RepetitionFilter(0.3),
            "the best blender the best blender the best blender the best blender ever",
            "repetition",
        ),
        (PiiFilter("reject"), "Email me at jane.doe@example.com about the blender.", "pii:email"),
    ],
)
def test_filter_rejects(stage, text, reason):
    record = rec(text)
    stage.run([record])
    assert record.status == "rejected" and record.reasons == [reason]


def test_default_filters_keep_a_normal_review():
    record = rec(GOOD)
    for stage in build_filters(FilterConfig(), {"r1": "Write one positive review of a blender."}):
        stage.run([record])
    assert record.status == "kept" and record.reasons == []


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry I bought this blender, it broke in a week.",
        "I can't recommend this place to anyone.",
        "I can't help but love the fries here.",
        "Sorry, the service was terribly slow and the food was cold.",
        "The customer service was great and the staff friendly.",
        "Here is the best burger in town.",
    ],
)
def test_reviews_that_sound_like_refusals_or_chatter_are_kept(text):
    record = rec(text)
    for stage in build_filters(FilterConfig(), {"r1": "Write one negative review of a blender."}):
        stage.run([record])
    assert record.status == "kept", record.reasons


def test_default_filters_reject_at_most_one_percent_of_real_sentences():
    """The filters are for model artefacts: of 1,000 real Yelp sentences they reject at most one
    (the README's claim: "DELICIOUS!!", one word, is too short)."""
    texts = [line.rpartition("\t")[0] for line in REAL_DATA.read_text(encoding="utf-8").splitlines()]
    records = [rec(t, str(i)) for i, t in enumerate(texts)]
    for stage in build_filters(FilterConfig(), {}):
        stage.run(records)
    rejected = [(r.reasons, r.text) for r in records if r.status == "rejected"]
    assert len(texts) == 1000
    assert len(rejected) <= 1, rejected


def test_pii_redact_keeps_the_record():
    text = "Call 555-123-4567 or visit 42 Maple Street. Card 4111 1111 1111 1111 from 10.0.0.12."
    record = rec(text)
    record.fields = {"text": text, "instruction": "Mail jo@example.com", "response": text}
    record.generation = {"raw": f"Review: {text}", "steps": {"response": {"raw": text, "seed": 5}}}
    PiiFilter("redact").run([record])
    assert "555-123-4567" not in json.dumps([record.fields, record.generation])
    assert record.fields["instruction"] == "Mail [EMAIL]", "PII only in a step output is redacted too"
    assert record.generation["raw"] == "Review: Call [PHONE] or visit [ADDRESS]. Card [CARD] from [IP]."
    assert record.generation["steps"]["response"]["seed"] == 5
    assert record.status == "kept"
    assert record.text == "Call [PHONE] or visit [ADDRESS]. Card [CARD] from [IP]."
    assert record.fields["pii_redacted"] == ["address", "card", "email", "ip", "phone"]


def test_card_numbers_need_luhn():
    assert [k for k, _ in find_pii("order 4111 1111 1111 1111")] == ["card"]
    assert [k for k, _ in find_pii("order 1234 5678 9012 3456")] == []


def test_rejected_records_are_not_checked_again():
    record = rec("Great.")
    record.reject("empty_output")
    stage = LengthFilter(3, 20)
    stage.run([record])
    assert record.reasons == ["empty_output"] and stage.stats.seen == 0
