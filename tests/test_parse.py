"""Parse: preambles, quotes and cut-off fragments are stripped; unusable output is rejected."""

from __future__ import annotations

import pytest

from textsynth.parse import clean


@pytest.mark.parametrize(
    ("raw", "truncated", "text"),
    [
        ('Here is a positive review:\n\n"Great blender. Works well."', False, "Great blender. Works well."),
        ("Sure! Here's a short review: Nice kettle.", False, "Nice kettle."),
        ("Review: I love it. It broke once and", True, "I love it."),
        ("“Solid shoes, comfy.”", False, "Solid shoes, comfy."),
        ("Great product! Would buy again.", False, "Great product! Would buy again."),
        ("Dear Mr. Johnson,\n\nI love these headphones.", False, "I love these headphones."),
        ("Hi Anna!\nThe kettle broke in a week.\n\nBest regards,\nTom", False, "The kettle broke in a week."),
        ("Hello Kitty backpack. Cute and roomy.", False, "Hello Kitty backpack. Cute and roomy."),
    ],
)
def test_clean(raw, truncated, text):
    assert clean(raw, truncated) == (text, None)


@pytest.mark.parametrize(
    ("raw", "truncated", "reason"),
    [("", False, "empty_output"), ('  ""  ', False, "empty_output"), ("It was fine and", True, "truncated")],
)
def test_unusable_output_gets_a_reason(raw, truncated, reason):
    assert clean(raw, truncated)[1] == reason
