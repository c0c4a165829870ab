"""The bad-input matrix: each case gives one line naming the place and the fix, exit code 2,
no traceback and no dataset. Model cases use real files (a fake GGUF is just bad bytes)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textsynth.cli import app

from .conftest import REAL_DATA

runner = CliRunner()
Setup = Callable[[Path], list[str]]  # edits the project copy, returns CLI args


def _yaml(old: str, new: str) -> Setup:
    def setup(project: Path) -> list[str]:
        path = project / "pipelines" / "sentiment.yaml"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
        return ["build", str(path), "--n", "6", "--out", str(project / "runs" / "x")]

    return setup


def _template(body: bytes) -> Setup:
    def setup(project: Path) -> list[str]:
        (project / "prompts" / "review_user.jinja").write_bytes(body)
        return [
            "build",
            str(project / "pipelines" / "sentiment.yaml"),
            "--n",
            "6",
            "--out",
            str(project / "runs" / "x"),
        ]

    return setup


def _args(*extra: str) -> Setup:
    def setup(project: Path) -> list[str]:
        return [
            "build",
            str(project / "pipelines" / "sentiment.yaml"),
            "--out",
            str(project / "runs" / "x"),
            *extra,
        ]

    return setup


def _leaf_cap(project: Path) -> list[str]:
    args = _yaml("seed: 7", "seed: 7\nmax_per_leaf: 1")(project)
    args[args.index("--n") + 1] = "3000"
    return args


def _fake_gguf(project: Path) -> list[str]:
    (project / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00not really a model")
    return _yaml("  name: default", f"  name: {project / 'bad.gguf'}")(project)


def _dir_without_config(project: Path) -> list[str]:
    (project / "emptymodel").mkdir()
    return _yaml("  name: default", f"  name: {project / 'emptymodel'}")(project)


def _out_under_file(project: Path) -> list[str]:
    (project / "afile").write_text("x")
    return _args("--n", "3", "--out", str(project / "afile" / "run"))(project)[:-2] + [
        "--out",
        str(project / "afile" / "run"),
    ]


def _out_is_file(project: Path) -> list[str]:
    (project / "runs").mkdir()
    (project / "runs" / "x").write_text("x")
    return _args("--n", "3")(project)


def _old_schema(project: Path) -> list[str]:
    (project / "runs" / "x").mkdir(parents=True)
    (project / "runs" / "x" / "manifest.json").write_text(json.dumps({"schema_version": 0}))
    return _args("--n", "3")(project)


def _corrupt_manifest(project: Path) -> list[str]:
    (project / "runs" / "x").mkdir(parents=True)
    (project / "runs" / "x" / "manifest.json").write_text("{not json")
    return _args("--n", "3")(project)


_held = []


def _locked(project: Path) -> list[str]:
    (project / "runs" / "x").mkdir(parents=True)
    fh = (project / "runs" / "x" / ".lock").open("a+")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a real second holder of the lock
    fh.write("4242")
    fh.flush()
    _held.append(fh)
    return _args("--n", "3")(project)


def _resume_missing(project: Path) -> list[str]:
    return ["resume", str(project / "runs" / "nothing")]


def _resume_no_manifest(project: Path) -> list[str]:
    (project / "runs" / "empty").mkdir(parents=True)
    return ["resume", str(project / "runs" / "empty")]


def _missing_pipeline(project: Path) -> list[str]:
    return ["build", str(project / "pipelines" / "nope.yaml")]


def _non_utf8_pipeline(project: Path) -> list[str]:
    path = project / "pipelines" / "sentiment.yaml"
    path.write_bytes(path.read_bytes() + b"\n# \xff\xfe\n")
    return ["build", str(path)]


def _fake_run(project: Path, status: str = "rejected") -> Path:
    """A run directory written by hand: manifest with the shipped config, records that failed."""
    from textsynth.config import SCHEMA_VERSION
    from textsynth.pipeline_file import load_pipeline

    run = project / "runs" / "done"
    run.mkdir(parents=True)
    config = load_pipeline(project / "pipelines" / "sentiment.yaml").model_dump(mode="json")
    (run / "manifest.json").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION, "config": config, "seed": 7})
    )
    record = {
        "id": "a1",
        "label": "positive",
        "attributes": {},
        "text": "Fine blender.",
        "status": status,
        "reasons": ["too_short"] if status == "rejected" else [],
    }
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    return run


def _export(*extra: str, status: str = "kept") -> Setup:
    def setup(project: Path) -> list[str]:
        return ["export", str(_fake_run(project, status)), *extra]

    return setup


def _push(*extra: str) -> Setup:
    def setup(project: Path) -> list[str]:
        return ["push", str(_fake_run(project)), *extra]

    return setup


def _real_jsonl(*extra: str) -> Setup:
    def setup(project: Path) -> list[str]:
        path = project / "real.jsonl"
        path.write_text('{"review": "Great food.", "stars": "5"}\n')
        return ["export", str(_fake_run(project, "kept")), "--mix-real", str(path), *extra]

    return setup


CASES: dict[str, tuple[Setup, str]] = {
    # config
    "malformed_yaml": (_yaml("seed: 7", "seed: [7"), "malformed YAML"),
    "unknown_top_field": (_yaml("seed: 7", "seed: 7\nsed: 8"), "sed: Extra inputs are not permitted"),
    "unknown_nested_field": (_yaml("  batch_size: 128", "  batchsize: 128"), "model.batchsize"),
    "wrong_type": (_yaml("seed: 7", "seed: seven"), "seed: Input should be a valid integer"),
    "labels_not_a_list": (_yaml("labels:\n", "labels: positive\nold_labels:\n"), "labels"),
    "duplicate_labels": (_yaml("  - name: negative", "  - name: positive"), "duplicate label 'positive'"),
    "label_without_description": (
        _yaml("    description: The reviewer is pleased", "    note: x"),
        "labels.0",
    ),
    "label_weight_zero": (
        _yaml(
            "    description: The reviewer is unhappy",
            "    weight: 0\n    description: The reviewer is unhappy",
        ),
        "weight",
    ),
    "temperature_too_high": (_yaml("  temperature: 0.8", "  temperature: 50"), "generation.temperature"),
    "top_p_zero": (_yaml("  top_p: 0.95", "  top_p: 0"), "generation.top_p"),
    "bad_dtype": (_yaml("  dtype: auto", "  dtype: int3"), "model.dtype"),
    "negative_n_in_yaml": (_yaml("n: 60", "n: -5"), "n: Input should be greater than or equal to 1"),
    "huge_n_in_yaml": (_yaml("n: 60", "n: 6000000000"), "n: Input should be less than or equal to 1000000"),
    "huge_label_count": (
        _yaml(
            "    description: The reviewer is unhappy",
            "    count: 99999999999\n    description: The reviewer is unhappy",
        ),
        "labels.1.count: Input should be less than or equal to 1000000 (lower it",
    ),
    "no_n_no_counts": (_yaml("n: 60", "# no n"), "set `n`"),
    "counts_on_some_labels": (
        _yaml(
            "    description: The reviewer is unhappy",
            "    count: 3\n    description: The reviewer is unhappy",
        ),
        "`count` for every label",
    ),
    "missing_pipeline_file": (_missing_pipeline, "no such pipeline file"),
    "pipeline_not_utf8": (_non_utf8_pipeline, "not UTF-8"),
    # taxonomy
    "taxonomy_weight_zero": (
        _yaml("        weight: 2", "        weight: 0"),
        "weight: Input should be greater than 0",
    ),
    "taxonomy_duplicate_value": (
        _yaml("blender, wireless headphones", "blender, blender"),
        "duplicate value 'blender'",
    ),
    "taxonomy_empty_values": (_yaml("    values: [blender,", "    values: []\n    old: [blender,"), "values"),
    "label_redefines_attribute": (
        _yaml(
            "    description: The reviewer is pleased with the product and would recommend it.",
            "    description: Pleased.\n    taxonomy:\n      product: [kettle]",
        ),
        "redefines attribute 'product'",
    ),
    "n_over_leaf_cap": (_leaf_cap, "max_per_leaf"),
    # quality stage
    "threshold_out_of_range": (
        _yaml("    min_cosine_similarity: 0.95", "    min_cosine_similarity: 1.5"),
        "quality.dedup.min_cosine_similarity",
    ),
    "unknown_filter": (
        _yaml("    language: en", "    language: en\n    profanity: true"),
        "quality.filters.profanity",
    ),
    "embedding_model_missing": (
        _yaml("  top_up_rounds: 2", "  top_up_rounds: 2\n  embedding_model: ./no/encoder"),
        "quality.embedding_model",
    ),
    # templates
    "missing_template": (_yaml("user: review_user.jinja", "user: nope.jinja"), "'nope.jinja' not found"),
    "undefined_variable": (_template(b"Write about {{ colour }}."), "undefined variable 'colour'"),
    "template_syntax": (_template(b"Write {% if %}"), "syntax error"),
    "template_attribute_escape": (_template(b"{{ label.__class__.__mro__ }}"), "sandbox"),
    "template_include_escape": (
        _template(b"{% include '../pipelines/sentiment.yaml' %}"),
        "prompt directories",
    ),
    "template_not_utf8": (_template(b"Write \xff\xfe {{ label }}"), "not UTF-8"),
    # model
    "missing_model_path": (_yaml("  name: default", "  name: ./no/such/model"), "does not exist"),
    "gguf_not_a_model": (_fake_gguf, "cannot be read as a GGUF model"),
    "model_dir_without_config": (_dir_without_config, "without config.json"),
    "max_new_tokens_beyond_context": (
        _yaml("  max_new_tokens: 80", "  max_new_tokens: 9000"),
        "exceeds the model's context",
    ),
    # CLI options
    "negative_n_option": (_args("--n", "-4"), "--n -4"),
    "zero_n_option": (_args("--n", "0"), "--n 0"),
    "negative_seed_option": (_args("--seed", "-1"), "--seed -1"),
    "huge_n_option": (_args("--n", "7000000000"), "--n 7000000000: at most 1000000 examples per run"),
    # run directory
    "out_under_a_file": (_out_under_file, "is a file"),
    "out_is_a_file": (_out_is_file, "not a directory"),
    "run_dir_locked": (_locked, "another textsynth build (pid 4242)"),
    "run_dir_old_schema": (_old_schema, "schema_version 0"),
    "run_dir_corrupt_manifest": (_corrupt_manifest, "corrupt manifest"),
    "resume_missing_dir": (_resume_missing, "no such run directory"),
    "resume_without_manifest": (_resume_no_manifest, "nothing to resume"),
    # export, push and real-data files
    "export_no_kept_records": (_export(status="rejected"), "no kept records"),
    "export_split_ratios": (_export("--splits", "0.8,0.3,0.1"), "--splits"),
    "export_unknown_format": (_export("--format", "docx"), "--format 'docx'"),
    "export_missing_run_dir": (lambda p: ["export", str(p / "runs" / "none")], "no such run directory"),
    "real_label_not_in_taxonomy": (_export("--mix-real", str(REAL_DATA)), "label '1' is not a label"),
    "real_file_missing": (_export("--mix-real", "/no/such/file.csv"), "no such file"),
    "real_unknown_column": (_real_jsonl(), "--text-col 'text' not found; columns are review, stars"),
    "real_bad_label_map": (_export("--mix-real", str(REAL_DATA), "--label-map", "0:neg"), "expected pairs"),
    "real_unknown_format": (_export("--mix-real", "pipelines/sentiment.yaml"), "unknown format"),
    "push_invalid_repo": (_push("--repo", "not/a/valid/repo"), "not a valid repo id"),
    "push_without_export": (_push("--repo", "me/data"), "no exported hub folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(project, case):
    setup, expected = CASES[case]
    args = setup(project)
    try:
        result = runner.invoke(app, args)
    finally:
        while _held:
            _held.pop().close()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not list(project.rglob("dataset"))


def test_matrix_is_large_enough():
    assert len(CASES) >= 30
