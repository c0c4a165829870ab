"""Real-data files as users have them: header rows, positions, and errors that name the option
where it was given (a flag on the command line, a key in the pipeline YAML)."""

from __future__ import annotations

import pytest

from textsynth.errors import ConfigError
from textsynth.readers import YAML_KEYS, read_real

LABELS = ["negative", "positive"]


def test_a_text_label_header_row_is_recognised_not_read_as_data(tmp_path):
    csv = tmp_path / "seeds.csv"
    csv.write_text("text,label\nGreat soup,positive\nCold fries,negative\n")
    data = read_real(csv, LABELS)
    assert data.texts == ["Great soup", "Cold fries"] and data.labels == ["positive", "negative"]
    tsv = tmp_path / "seeds.tsv"
    tsv.write_text("sentence\tscore\nGreat soup\t1\nCold fries\t0\nNice staff\t1\n")
    data = read_real(tsv, LABELS, label_map="0=negative,1=positive")
    assert data.texts == ["Great soup", "Cold fries", "Nice staff"]  # header by its label, not its name
    other = tmp_path / "reviews.csv"
    other.write_text("id,review,stars\n1,Great soup,positive\n2,Cold fries,negative\n")
    data = read_real(other, LABELS, text_col="1", label_col="2")
    assert data.texts == ["Great soup", "Cold fries"]


def test_a_first_row_that_is_data_stays(tmp_path):
    tsv = tmp_path / "real.tsv"
    tsv.write_text("Great soup\t1\nCold fries\t0\n")
    assert read_real(tsv, LABELS, label_map="0=negative,1=positive").texts == ["Great soup", "Cold fries"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("Great soup\t1\nCold fries\t7\nNice staff\t1\n")
    with pytest.raises(ConfigError, match="row 2: label '7'"):
        read_real(bad, LABELS, label_map="0=negative,1=positive")


def test_errors_name_the_yaml_key_in_a_pipeline_and_the_flag_on_the_command_line(tmp_path):
    tsv = tmp_path / "real.tsv"
    tsv.write_text("Great soup\t1\nCold fries\t0\n")
    with pytest.raises(ConfigError, match=r"seed_examples\.label_map:") as yaml_error:
        read_real(tsv, LABELS, names=YAML_KEYS)
    assert "--label-map" not in str(yaml_error.value)
    with pytest.raises(ConfigError, match="--label-map"):
        read_real(tsv, LABELS)
    with pytest.raises(ConfigError, match=r"seed_examples\.text_col: 'body' not found"):
        read_real(_csv(tmp_path), LABELS, text_col="body", names=YAML_KEYS)


def _csv(tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("text,label\nGreat soup,positive\n")
    return path
