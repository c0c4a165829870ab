"""Filters on hand-made texts: each one rejects what it is for and keeps a normal review."""

from __future__ import annotations

import pytest

from textsynth.config import FilterConfig
from textsynth.quality.filters import (
    EchoFilter,
    LanguageFilter,
    LengthFilter,
    PiiFilter,
    RefusalFilter,
    RepetitionFilter,
    build_filters,
    find_pii,
)
from textsynth.records import Record

GOOD = "The blender crushes ice in seconds and cleans up easily. Worth every penny."


def rec(text: str, rid: str = "r1") -> Record:
    return Record(id=rid, label="positive", attributes={}, text=text)


@pytest.mark.parametrize(
    ("stage", "text", "reason"),
    [
        (LengthFilter(3, 20), "Great.", "too_short"),
        (LengthFilter(3, 5), GOOD, "too_long"),
        (RefusalFilter(), "As an AI language model, I cannot write reviews.", "refusal"),
        (RefusalFilter(), "Sure! Here is a review of the blender.", "refusal"),
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


def test_pii_redact_keeps_the_record():
    record = rec("Call 555-123-4567 or visit 42 Maple Street. Card 4111 1111 1111 1111 from 10.0.0.12.")
    PiiFilter("redact").run([record])
    assert record.status == "kept"
    assert record.text == "Call [PHONE] or visit [ADDRESS]. Card [CARD] from [IP]."
    assert record.fields["pii_redacted"] == ["address", "card", "ip", "phone"]


def test_card_numbers_need_luhn():
    assert [k for k, _ in find_pii("order 4111 1111 1111 1111")] == ["card"]
    assert [k for k, _ in find_pii("order 1234 5678 9012 3456")] == []


def test_rejected_records_are_not_checked_again():
    record = rec("Great.")
    record.reject("empty_output")
    stage = LengthFilter(3, 20)
    stage.run([record])
    assert record.reasons == ["empty_output"] and stage.stats.seen == 0
