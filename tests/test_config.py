"""Config errors: one line naming the file, the line, the field and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from textsynth.errors import ConfigError
from textsynth.pipeline_file import load_pipeline


def _edit(project, old: str, new: str):
    path = project / "pipelines" / "sentiment.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_shipped_pipelines_validate():
    from .conftest import ROOT

    for path in (ROOT / "pipelines").glob("*.yaml"):
        pipeline = load_pipeline(path)
        assert pipeline.labels if pipeline.task == "classification" else pipeline.steps


def test_unknown_field_names_its_line(project):
    path = _edit(project, "  batch_size: 128", "  batch_size: 128\n  batchsize: 8")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    msg = str(err.value)
    assert f"sentiment.yaml:{_line(path, 'batchsize')}: model.batchsize" in msg
    assert "remove it or fix its spelling" in msg and "\n" not in msg


def test_label_without_description(project):
    path = _edit(project, "    description: The reviewer is pleased", "    descr: The reviewer is pleased")
    with pytest.raises(
        ConfigError, match=r"sentiment\.yaml:7: labels\.0\.description: Field required \(add it\)"
    ):
        load_pipeline(path)


def test_malformed_yaml_names_line(project):
    path = _edit(project, "seed: 7", "seed: [7")
    with pytest.raises(ConfigError, match=r"sentiment\.yaml:\d+: malformed YAML"):
        load_pipeline(path)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("  - name: negative", "  - name: positive", "duplicate label 'positive'"),
        ("seed: 7", "seed: seven", r"seed: Input should be a valid integer"),
        ("        weight: 2", "        weight: 0", r"weight: Input should be greater than 0"),
        ("  temperature: 0.8", "  temperature: hot", "generation.temperature"),
        ("  dtype: auto", "  dtype: int3", "model.dtype"),
        ("n: 60", "n: -5", r"\bn: Input should be greater than or equal to 1"),
        (
            "  guidance_tokens: 16",
            "  guidance_tokens: 16\n  length_push: 1",
            r"generation\.length_push: the target lengths come from the seed texts; add `seed_examples`",
        ),
    ],
)
def test_bad_values(project, old, new, match):
    path = _edit(project, old, new)
    with pytest.raises(ConfigError, match=match):
        load_pipeline(path)


@pytest.mark.parametrize("choices", ["[]", "[fact, fact]", "[fact, '']"])
def test_bad_choice_fields(project, choices):
    path = project / "pipelines" / "qa.yaml"
    path.write_text(path.read_text().replace("answer: str", f"answer: {choices}"))
    with pytest.raises(ConfigError, match="choices must be distinct non-empty strings"):
        load_pipeline(path)


def test_missing_file_and_non_mapping(project):
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_pipeline(project / "pipelines" / "nope.yaml")
    path = project / "pipelines" / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_pipeline(path)


def _validate(path) -> subprocess.CompletedProcess:
    from .conftest import ROOT

    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("seed: 7", "seed: 7\nseed: 8", "seed"),  # a repeated scalar
        ("  batch_size: 128", "  batch_size: 128\n  batch_size: 8", "batch_size"),  # nested
        (
            "taxonomy:\n",
            "labels:\n  - {name: a, description: A}\n  - {name: b, description: B}\ntaxonomy:\n",
            "labels",
        ),
    ],
)
def test_duplicate_key_names_both_lines(project, old, new, key):
    path = _edit(project, old, new)
    lines = [
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(f"{key}:")
    ]
    proc = _validate(path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    out = proc.stderr.strip().splitlines()
    assert len(out) == 1, proc.stderr
    assert f"sentiment.yaml:{lines[-1]}: duplicate key {key!r}, first at line {lines[0]}" in out[0]


def test_a_folder_as_pipeline_is_one_line(project):
    proc = _validate(project / "pipelines")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    out = proc.stderr.strip().splitlines()
    assert len(out) == 1 and "is a folder" in out[0] and ".yaml" in out[0], proc.stderr


def test_labels_equal_up_to_case_are_refused_naming_both(project):
    path = _edit(project, "  - name: neutral", "  - name: Positive")
    with pytest.raises(ConfigError, match="labels 'positive' and 'Positive' differ only in case"):
        load_pipeline(path)


def test_an_n_that_leaves_a_label_empty_is_refused_with_the_counts(project):
    from textsynth.pipeline import prepare

    path = project / "pipelines" / "sentiment.yaml"
    with pytest.raises(ConfigError, match="positive 1, negative 1, neutral 0, so neutral get no examples"):
        prepare(path, n=2)
    assert len(prepare(path, n=3).planned) == 3
