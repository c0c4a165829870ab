"""Tiered dedup with the real MiniLM encoder; invariants as property tests."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from textsynth.embed import TextEmbedder
from textsynth.quality.dedup import Dedup, rethreshold
from textsynth.quality_config import DedupConfig
from textsynth.records import Record

EMBED = TextEmbedder()


def rec(rid: str, text: str, quality: float = 0.5, label: str = "positive") -> Record:
    return Record(id=rid, label=label, attributes={}, text=text, scores={"quality": quality})


def test_each_tier_catches_its_kind_and_keeps_the_best():
    records = [
        rec("a", "The blender is powerful and quiet, I use it every morning.", 0.9),
        rec(
            "b", "the blender is POWERFUL and quiet -- I use it every morning!", 0.5
        ),  # exact after normalizing
        rec("c", "The blender is powerful and quiet, I use it every morning now.", 0.4),  # near
        rec("d", "My blender is strong and silent, and I run it each morning.", 0.3),  # paraphrase
        rec("e", "My running shoes fell apart after two weeks on the trail.", 0.2),
    ]
    Dedup(DedupConfig(min_cosine_similarity=0.75), EMBED).run(records)
    status = {r.id: (r.status, r.reasons, r.fields.get("dup_method")) for r in records}
    assert status["a"] == ("kept", [], None)
    assert status["b"] == ("rejected", ["duplicate_of:a"], "exact")
    assert status["c"] == ("rejected", ["duplicate_of:a"], "minhash")
    assert status["d"][1] == ["duplicate_of:a"] and status["d"][2] == "semantic"
    assert status["e"] == ("kept", [], None)
    assert all(r.cluster == "a" for r in records if r.id != "e")


def test_scope_label_does_not_compare_across_labels():
    text = "Exactly the same words in both records here."
    records = [rec("a", text), rec("b", text, label="negative")]
    Dedup(DedupConfig(scope="label"), EMBED).run(records)
    assert all(r.status == "kept" for r in records)
    Dedup(DedupConfig(scope="global"), EMBED).run(records)
    assert [r.status for r in records] == ["kept", "rejected"]


VOCAB = ["good", "bad", "blender", "fast", "slow", "quiet", "loud", "cheap", "works", "broke"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from(VOCAB), min_size=3, max_size=9), st.floats(0, 1)),
        min_size=2,
        max_size=25,
    )
)
# found by the search: an exact duplicate of a record that a later tier (MinHash) rejected
@example(items=[(["good"] * 4, 0.0), (["good"] * 3, 0.0), (["good"] * 3, 0.0)])
def test_no_duplicate_pair_loses_both_and_representatives_are_kept(items):
    records = [rec(f"r{i:02d}", " ".join(words), q) for i, (words, q) in enumerate(items)]
    records.append(rec(f"r{len(records):02d}", records[0].text or "", items[0][1]))  # one sure duplicate
    Dedup(DedupConfig(min_cosine_similarity=None), None).run(records)
    by_id = {r.id: r for r in records}
    kept = [r for r in records if r.status == "kept"]
    assert kept  # a cluster never loses every member
    assert any(r.status == "rejected" for r in records)  # so the checks below always run
    for r in records:
        if r.status == "rejected":
            rep = by_id[r.reasons[0].split(":")[1]]
            assert rep.status == "kept"  # no chains: the representative itself survived
            assert (rep.scores["quality"], -int(rep.id[1:])) >= (r.scores["quality"], -int(r.id[1:]))


def test_minhash_permutations_follow_the_pipeline_seed(monkeypatch):
    from datasketch import MinHash

    from textsynth.taxonomy import derived_seed

    used: list[int] = []
    generator = MinHash.generator

    def spy(*args, **kwargs):
        used.append(kwargs["seed"])
        return generator(*args, **kwargs)

    monkeypatch.setattr(MinHash, "generator", spy)
    texts = ["The kettle boils fast and looks good.", "The kettle boils fast and looks good!!", "Bad shoes."]
    verdicts = []
    for pipeline_seed in (7, 8):
        records = [rec(f"r{i}", t) for i, t in enumerate(texts)]
        for r in records:
            r.generation["seed"] = derived_seed(pipeline_seed, r.id)
        Dedup(DedupConfig(exact=False, min_cosine_similarity=None), None).run(records)
        verdicts.append([r.reasons for r in records])
    assert len(used) == 2 and used[0] != used[1] and 1 not in used
    assert verdicts[0] == verdicts[1] == [[], ["duplicate_of:r0"], []]


def test_a_chain_of_tiers_points_at_the_kept_record_and_survives_a_rethreshold():
    records = [
        rec("a", "The blender is powerful and quiet, I use it every morning.", 0.9),
        rec("c", "The blender is powerful and quiet, I use it every morning now.", 0.6),
        rec("b", "the blender is POWERFUL and quiet, i use it every morning NOW!", 0.5),  # exact of c
        rec("e", "My running shoes fell apart after two weeks on the trail.", 0.2),
    ]
    Dedup(DedupConfig(min_cosine_similarity=None), EMBED).run(records)
    by_id = {r.id: r for r in records}
    assert by_id["c"].reasons == ["duplicate_of:a"] and by_id["c"].fields["dup_method"] == "minhash"
    assert by_id["b"].reasons == ["duplicate_of:a"] and by_id["b"].cluster == "a"
    assert by_id["b"].fields["dup_via"] == "c", "the record it matched stays on record"
    vectors = dict(zip((r.id for r in records), EMBED([r.text or "" for r in records])))
    again = {r.id: r for r in rethreshold(records, vectors, DedupConfig(min_cosine_similarity=0.99))}
    assert again["b"].reasons == ["duplicate_of:a"] and again["b"].fields["dup_via"] == "c"
    assert again["a"].status == "kept" and again["e"].status == "kept"


def test_a_rethreshold_that_keeps_a_semantic_duplicate_gives_it_back_its_own_duplicates():
    records = [
        rec("a", "The blender is powerful and quiet, I use it every morning.", 0.9),
        rec("d", "My blender is strong and silent, and I run it each morning.", 0.6),  # paraphrase
        rec("f", "my blender is STRONG and silent and I run it each morning!", 0.5),  # exact of d
    ]
    Dedup(DedupConfig(min_cosine_similarity=0.75), EMBED).run(records)
    by_id = {r.id: r for r in records}
    assert by_id["d"].fields["dup_method"] == "semantic"
    assert by_id["f"].reasons == ["duplicate_of:a"] and by_id["f"].fields["dup_via"] == "d"
    vectors = dict(zip((r.id for r in records), EMBED([r.text or "" for r in records])))
    again = {r.id: r for r in rethreshold(records, vectors, DedupConfig(min_cosine_similarity=0.99))}
    assert again["d"].status == "kept"
    assert again["f"].reasons == ["duplicate_of:d"] and again["f"].cluster == "d"
    assert "dup_via" not in again["f"].fields
