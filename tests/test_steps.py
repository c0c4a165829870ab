"""Multi-step pipelines with the embedded model: step order, provenance, JSON retries, per-step
resume after kill -9 between steps, label-free export, and a judge that separates planted
good and bad responses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import ROOT, edit_pipeline
from textsynth.errors import ConfigError, TemplateError
from textsynth.generate import request_fingerprint
from textsynth.models import identify
from textsynth.parse import parse_json
from textsynth.pipeline import prepare, resume_build, run_build
from textsynth.pipeline_file import load_pipeline

from .helpers import cli

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

INSTRUCTIONS = ROOT / "pipelines" / "instructions.yaml"
QA = ROOT / "pipelines" / "qa.yaml"


@pytest.fixture(scope="module")
def instructions(tmp_path_factory: pytest.TempPathFactory):
    return run_build(INSTRUCTIONS, n=8, out=tmp_path_factory.mktemp("runs") / "instructions", quiet=True)


def test_each_step_sees_the_outputs_of_the_earlier_ones(instructions):
    records = [json.loads(line) for line in (instructions.run_dir / "records.jsonl").read_text().splitlines()]
    assert len(records) >= 8
    prep = prepare(INSTRUCTIONS, n=8)
    planned = {ex.id: ex for ex in prep.planned}
    model = identify(prep.pipeline.model)
    complete = [r for r in records if len(r["generation"]["steps"]) == 3]
    assert len(complete) >= 6  # most records ran all three steps, not every instruction failing
    for r in records:
        steps = r["generation"]["steps"]
        assert set(steps) in (
            {"instruction", "response", "judge"},
            {"instruction", "response"},
            {"instruction"},
        )
        assert set(steps["instruction"]["template_sha"]) == {"instructions_instruction.jinja"}
        if len(steps) < 3:  # a step's output was unusable, so later steps did not run
            assert r["status"] == "rejected"
            continue
        assert steps["instruction"]["seed"] != steps["response"]["seed"]
        assert r["text"] == r["fields"]["response"] and r["fields"]["instruction"]
        assert 1 <= r["scores"]["judge_relevance"] <= 5 and 0 <= r["scores"]["quality"] <= 1
        if r["id"] in planned:  # the response prompt was rendered from this record's instruction
            messages = prep.steps["response"].render(
                planned[r["id"]], {"instruction": r["fields"]["instruction"]}
            )
            assert messages[-1]["content"] == r["fields"]["instruction"]
            params = prep.pipeline.steps[1].generation
            fingerprint = request_fingerprint(model, messages, params, steps["response"]["seed"])
            assert fingerprint == steps["response"]["fingerprint"]


def test_judge_scores_come_from_the_cache_on_a_rebuild(instructions, tmp_path):
    import shutil
    import sqlite3

    def scores(run: Path) -> int:
        with sqlite3.connect(run / "cache.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    judged = sum(1 for line in (instructions.run_dir / "records.jsonl").open() if '"judge_relevance"' in line)
    assert scores(instructions.run_dir) == 2 * judged  # one row per example and criterion
    copy = tmp_path / "copy"
    shutil.copytree(instructions.run_dir, copy)
    with sqlite3.connect(copy / "cache.sqlite") as db:  # planted answers: every judge says 5
        db.execute("UPDATE scores SET loglik = '[-30, -30, -30, -30, 0]'")
    run_build(INSTRUCTIONS, n=8, out=copy, quiet=True)
    before = {json.loads(line)["id"] for line in (instructions.run_dir / "records.jsonl").open()}
    rebuilt = [json.loads(line) for line in (copy / "records.jsonl").read_text().splitlines()]
    again = [r["scores"]["judge"] for r in rebuilt if "judge" in r["scores"] and r["id"] in before]
    assert len(again) >= 8 and min(again) > 4.99  # read back, not judged again


def test_label_free_export_has_no_classlabel_and_fine_tuning_turns(instructions):
    ds = instructions.dataset
    split = next(iter(ds.values()))
    assert "label" not in split.features
    assert {"instruction", "judge_relevance", "judge_helpfulness", "difficulty"} <= set(split.features)
    formats = instructions.run_dir / "formats"
    assert not list(formats.glob("*.classification.jsonl"))
    name = next(iter(ds))
    trl = [json.loads(line) for line in (formats / f"{name}.trl.jsonl").read_text().splitlines()]
    rows = ds[name].to_list()
    assert [m["messages"][0] for m in trl] == [{"role": "user", "content": r["instruction"]} for r in rows]
    assert [m["messages"][1]["content"] for m in trl] == [r["text"] for r in rows]
    alpaca = [json.loads(line) for line in (formats / f"{name}.alpaca.jsonl").read_text().splitlines()]
    assert alpaca[0] == {"instruction": rows[0]["instruction"], "input": "", "output": rows[0]["text"]}
    from textsynth.commands import open_run
    from textsynth.report import write_report

    assert "<h2>Judge scores</h2>" in write_report(*open_run(instructions.run_dir, "report on")).read_text()
    card = (instructions.run_dir / "hub" / "README.md").read_text()
    assert "text-generation" in card and "Judge scores" in card and "(edge case)" in card


def test_edge_case_quota_is_exact():
    prep = prepare(INSTRUCTIONS, n=30)
    assert sum(ex.attributes["difficulty"] == "ambiguous" for ex in prep.planned) == 3


def test_kill_between_steps_then_resume_is_byte_identical(tmp_path):
    """fp32: a build killed between steps and resumed writes the uninterrupted build's bytes."""
    pipeline = _copy(tmp_path) / "pipelines" / "instructions.yaml"
    text = pipeline.read_text().replace("  name: default\n", "  name: default\n  dtype: float32\n")
    text = text.replace("max_new_tokens: 96", "max_new_tokens: 40")  # fp32 is slow here
    pipeline.write_text(text.replace("top_up_rounds: 1", "top_up_rounds: 0"))  # one round is enough
    out = tmp_path / "killed"
    args = ("build", str(pipeline), "--n", "4", "--out", str(out), "--quiet", "--json")
    killed = cli(*args, fault="step_done:1")  # SIGKILL right after the instruction step
    assert killed.returncode == -9
    assert not (out / "records.jsonl").exists()
    for cache in out.glob("cache.sqlite*"):  # the finished step must come from the run's shards
        cache.unlink()
    summary = resume_build(out, quiet=True).summary  # in this process, where the model is loaded
    assert summary.reused >= 4 and summary.cached == 0, "the instruction step came from the shards"
    fresh = tmp_path / "fresh"
    run_build(pipeline, n=4, out=fresh, quiet=True)
    for name in ("records.jsonl", "data.jsonl"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_a_later_step_edit_reuses_the_earlier_step_from_the_shards_and_reports_drift(tmp_path):
    """Editing the response step's template: the instruction step comes from the run's shards,
    the responses are regenerated, and the drift report counts exactly those requests."""
    project = _copy(tmp_path)
    pipeline = project / "pipelines" / "instructions.yaml"
    pipeline.write_text(pipeline.read_text().replace("top_up_rounds: 1", "top_up_rounds: 0"))
    out = tmp_path / "run"
    # no export: a 4-example bf16 build may keep none of its pairs (the judge), and this test is
    # about which requests the second build reuses, not about what either keeps
    first = run_build(pipeline, n=4, out=out, quiet=True, export=False)
    answered = sum("response" in r.generation["steps"] for r in _records(out))
    system = project / "prompts" / "instructions_response_system.jinja"
    system.write_text(system.read_text() + "\nKeep it brief.")
    for cache in out.glob("cache.sqlite*"):  # what is reused must come from the shards
        cache.unlink()
    second = run_build(pipeline, n=4, out=out, quiet=True, export=False)
    assert second.summary.drift is not None and second.summary.drift.changed == answered > 0
    assert second.summary.drift.new == second.summary.drift.dropped == 0
    assert second.summary.reused >= first.summary.planned, "every instruction from the shards"
    assert second.summary.generated >= answered, "every response again"


def _records(run: Path):
    from textsynth.records import Record

    return [Record.from_json(line) for line in (run / "records.jsonl").read_text().splitlines()]


def test_unparseable_json_is_retried_with_new_seeds_then_rejected(tmp_path):
    qa = edit_pipeline(
        _copy(tmp_path) / "pipelines" / "qa.yaml", max_new_tokens="3", top_up_rounds="0", n="4"
    )
    with pytest.raises(Exception, match="no kept records"):
        run_build(qa, out=tmp_path / "run", quiet=True)
    records = _records(tmp_path / "run")
    assert len(records) == 4 and all(r.reasons == ["unparseable"] for r in records)
    for r in records:
        assert r.generation["steps"]["qa"]["attempts"] == 3  # retries: 2
        assert len(set(r.generation["steps"]["qa"]["attempt_fingerprints"])) == 3
    lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "run" / "shards").glob("*.jsonl"))
    with pytest.raises(Exception, match="no kept records"):  # a rebuild of the same config …
        run_build(qa, out=tmp_path / "run", quiet=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["drift"] is None and summary["reused"] == 4  # … reports no change
    again = sum(len(p.read_text().splitlines()) for p in (tmp_path / "run" / "shards").glob("*.jsonl"))
    assert again == lines  # and appends nothing


def test_json_step_builds_typed_fields(tmp_path):
    result = run_build(QA, n=8, out=tmp_path / "qa", quiet=True)
    records = _records(result.run_dir)
    assert not [r for r in records if "unparseable" in r.reasons], "decoded to the schema, every one parses"
    for r in records:
        assert isinstance(r.fields["question"], str) and r.text == r.fields["answer"]
        assert r.generation["steps"]["qa"]["raw"].startswith('{"question": "')  # nothing around the object


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"question": "Why?", "answer": "Because."}', {"question": "Why?", "answer": "Because."}),
        ('Sure!\n```json\n{"question": " Q ", "answer": "A"}\n```', {"question": "Q", "answer": "A"}),
        ('{"question": "Q"}', None),
        ('{"question": "Q", "answer": ""}', None),
        ('{"question": "Q", "answer": 3', None),
        ("no json here", None),
    ],
)
def test_parse_json(raw, expected):
    assert parse_json(raw, {"question": "str", "answer": "str"}) == expected


def test_typed_fields_are_validated():
    assert parse_json('{"n": "7", "ok": true}', {"n": "int", "ok": "bool"}) == {"n": 7, "ok": True}
    assert parse_json('{"n": "seven", "ok": true}', {"n": "int", "ok": "bool"}) is None


def _copy(tmp_path: Path) -> Path:
    from tests.conftest import copy_project

    return copy_project(tmp_path / "project")


def _write(project: Path, body: str) -> Path:
    path = project / "pipelines" / "bad.yaml"
    path.write_text(body)
    return path


BASE = """name: bad
task: generation
n: 2
taxonomy:
  domain: [cooking]
steps:
"""


def test_step_using_a_later_output_is_an_error(tmp_path):
    project = _copy(tmp_path)
    (project / "prompts" / "a.jinja").write_text("Answer {{ response }} about {{ domain }}")
    (project / "prompts" / "b.jinja").write_text("Say something about {{ domain }}")
    path = _write(
        project,
        BASE + "  - {name: instruction, templates: {user: a.jinja}}\n"
        "  - {name: response, templates: {user: b.jinja}}\n",
    )
    with pytest.raises(TemplateError, match="a.jinja: uses 'response', which a later step produces"):
        prepare(path)


def test_unknown_variable_and_bad_steps_are_one_line_errors(tmp_path):
    project = _copy(tmp_path)
    (project / "prompts" / "a.jinja").write_text("Answer {{ nothing }}")
    with pytest.raises(TemplateError, match="undefined variable 'nothing'"):
        prepare(_write(project, BASE + "  - {name: response, templates: {user: a.jinja}}\n"))
    cases = {
        "  - {name: j, templates: {user: a.jinja}, judge: {criteria: {}}}\n": "criteria",
        "  - {name: q, templates: {user: a.jinja}, output: json}\n": "needs `fields`",
        "  - {name: q, templates: {user: a.jinja}}\n  - {name: q, templates: {user: a.jinja}}\n": "already",
    }
    for steps, message in cases.items():
        with pytest.raises(ConfigError, match=message) as err:
            load_pipeline(_write(project, BASE + steps))
        assert "bad.yaml:" in str(err.value) and "\n" not in str(err.value)


GOOD_BAD = [
    (
        "How do I boil an egg?",
        "Put the egg in boiling water for about nine minutes, then cool it in cold water.",
        "My favourite colour is blue and I once owned a bicycle.",
    ),
    (
        "Give me a tip for saving money on groceries.",
        "Plan your meals for the week and buy only what is on your list.",
        "The Eiffel Tower is in Paris.",
    ),
    (
        "How often should I water a cactus?",
        "Water a cactus about every two to three weeks, letting the soil dry out in between.",
        "Dogs bark at night sometimes.",
    ),
    (
        "What should I pack for a beach trip?",
        "Pack sunscreen, a towel, a hat, water and a swimsuit.",
        "Mathematics is the study of numbers.",
    ),
    (
        "How can I start running?",
        "Begin with short runs of ten minutes three times a week and slowly add time.",
        "I do not know anything about that, sorry, banana.",
    ),
    (
        "How do I fix a squeaky door?",
        "Put a few drops of oil on the hinges and open and close the door a few times.",
        "Pizza was invented in Italy.",
    ),
    (
        "Write a short email asking my boss for Friday off.",
        "Hi Sam, could I take this Friday off? My tasks will be done by Thursday. Thanks, Alex.",
        "The moon orbits the Earth.",
    ),
    (
        "Explain what a budget is.",
        "A budget is a plan that lists your expected income and how you will spend it.",
        "Cats have four legs and a tail.",
    ),
    (
        "Suggest a quick vegetarian dinner.",
        "Make a vegetable stir-fry with tofu, peppers and rice in fifteen minutes.",
        "Airplanes fly in the sky.",
    ),
    (
        "How do I keep basil alive indoors?",
        "Give basil six hours of sun by a window and water it when the topsoil is dry.",
        "The stock market went up yesterday.",
    ),
    (
        "Compare trains and planes for a 300 km trip.",
        "For 300 km a train is usually faster door to door, since there is no airport security wait.",
        "Blue whales are very large animals.",
    ),
    (
        "How do I stretch after a workout?",
        "Hold each stretch for about thirty seconds, covering your legs, hips and shoulders.",
        "Chocolate is made from cocoa beans.",
    ),
    (
        "Summarize why sleep matters.",
        "Sleep lets the body recover and the brain store memories, so it affects mood and health.",
        "A triangle has three sides.",
    ),
    (
        "How do I unclog a sink?",
        "Pour boiling water down the drain, then use a plunger; a drain snake helps if that fails.",
        "The library opens at nine.",
    ),
    (
        "Give me ideas for a rainy day at home.",
        "Bake bread, do a puzzle, watch a film series or reorganize a closet.",
        "Volcanoes erupt lava.",
    ),
    (
        "What is compound interest?",
        "It is interest earned on your savings plus the interest they already earned.",
        "My neighbour has a red car.",
    ),
    (
        "How long should I cook rice?",
        "White rice usually cooks in about 15 to 18 minutes after the water boils.",
        "Giraffes have long necks.",
    ),
    (
        "How do I pick a good hotel?",
        "Compare recent reviews, the location near what you want to see, and the total price.",
        "Snow is cold.",
    ),
    (
        "How do I patch a hole in drywall?",
        "Cover the hole with mesh tape, spread joint compound, let it dry, then sand and paint.",
        "Tea is a popular drink in England.",
    ),
    (
        "Suggest a simple home workout.",
        "Do three rounds of ten squats, ten push-ups and a thirty-second plank.",
        "The alphabet has 26 letters.",
    ),
]


def test_judge_separates_planted_good_and_bad_responses(tmp_path):
    from textsynth.backends import load_backend
    from textsynth.cache import CompletionCache
    from textsynth.models import identify
    from textsynth.scoring import CachedScorer
    from textsynth.steps import judge, planned_record, step_inputs
    from textsynth.taxonomy import PlannedExample

    prep = prepare(INSTRUCTIONS, n=2)
    pipeline = prep.pipeline
    step = pipeline.steps[-1]
    records, plans = [], {}
    for i, (instruction, good, bad) in enumerate(GOOD_BAD):
        for kind, response in (("good", good), ("bad", bad)):
            planned = PlannedExample(
                f"{kind}{i}", "all", {"task_type": "x", "domain": "x", "difficulty": "simple"}, 0, i
            )
            plans[planned.id] = planned
            records.append(planned_record(planned))
            records[-1].fields.update(instruction=instruction, response=response)
    cache = CompletionCache(tmp_path / "cache.sqlite")
    scorer = CachedScorer(lambda: load_backend(pipeline.model), cache, identify(pipeline.model))
    templates = prep.steps[step.name]
    judge(
        step, records, scorer, lambda r, extra: templates.render(plans[r.id], {**step_inputs(r), **extra}), {}
    )
    truth = [r.id.startswith("good") for r in records]
    auc = roc_auc_score(truth, [r.scores["judge"] for r in records])
    print(f"judge ROC AUC on {len(GOOD_BAD)} good and {len(GOOD_BAD)} bad responses: {auc:.3f}")
    assert auc >= 0.7  # the embedded 135M model is a weak judge; 0.5 is chance (see README)
    assert np.mean([r.scores["judge"] for r in records if r.id.startswith("good")]) > np.mean(
        [r.scores["judge"] for r in records if r.id.startswith("bad")]
    )
