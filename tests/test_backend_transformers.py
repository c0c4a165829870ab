"""The decode loop against a live `model.generate` on the same prompts, and seeded sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textsynth.backends import decode
from textsynth.backends.base import Feed, Request
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig

PRODUCTS = ["blender", "laptop", "tent", "kettle", "novel", "phone", "desk lamp"]


def _requests() -> list[Request]:
    return [
        Request(
            f"r{i}",
            [
                {
                    "role": "user",
                    "content": f"Write one short {'positive' if i % 2 else 'negative'} "
                    f"customer review about a {p}. Output only the review.",
                }
            ],
            1000 + i,
        )
        for i, p in enumerate(PRODUCTS)
    ]


@pytest.mark.slow
def test_fp32_greedy_matches_generate_token_for_token():
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=4))
    params = GenerationParams(max_new_tokens=24, temperature=0)
    ours = {c.id: c for c in backend.generate(_requests(), params)}
    model, tok = backend.loaded.model, backend.loaded.tokenizer
    for req in _requests():
        ids = torch.tensor([backend.encode(req.messages)])
        ref = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )[0, ids.shape[1] :].tolist()
        ended = ref[-1] in backend.eos.tolist()
        assert ours[req.id].tokens == len(ref)
        assert ours[req.id].finish_reason == ("stop" if ended else "length")
        assert ours[req.id].text == tok.decode(ref[:-1] if ended else ref, skip_special_tokens=True)


def test_sampling_independent_of_batch_composition():
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=7))
    params = GenerationParams(max_new_tokens=24, temperature=0.9)
    together = {c.id: c.text for c in backend.generate(_requests(), params)}
    backend.batch_size = 2
    apart = {c.id: c.text for c in backend.generate(_requests()[::-1], params)}
    assert together == apart
    assert len(set(together.values())) == len(PRODUCTS)  # sampling, not one fixed output


def test_a_group_added_while_streaming_joins_the_running_loop_with_the_texts_it_gets_alone():
    """A build adds its planned-ahead requests while the rest decode (Feed). They must join the
    same decode loop, not start after it, and get the texts they get alone (fp32), also when
    their prompts share less of the first group's common prefix (another system prompt)."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=4))
    params = GenerationParams(max_new_tokens=24, temperature=0.9)
    first, later = _requests()[:4], _requests()[4:]
    system = {"role": "system", "content": "You answer in plain words."}
    later = [Request(r.id, [system, *r.messages], r.seed) for r in later]
    alone = {c.id: c.text for c in backend.generate(first + later, params)}
    loops = []
    make_loop = backend._loop
    backend._loop = lambda: loops.append(make_loop()) or loops[-1]  # a spy: counts decode loops
    feed, seen = Feed(first), []
    for completion in backend.stream(feed, params):
        seen.append(completion)
        if len(seen) == 1:
            feed.add(later)
    assert {c.id: c.text for c in seen} == alone
    assert len(loops) == 1  # one loop took both groups: the added one did not wait for a new one


def _guided_requests(labels: int = 2) -> list[Request]:
    """Each request with its guidance prompts: the same request naming the opposite sentiment,
    and with three labels also the neutral one."""
    out = []
    for r in _requests():
        text = r.messages[0]["content"]
        flipped = text.replace("positive", "NEG").replace("negative", "positive").replace("NEG", "negative")
        neutral = text.replace("positive", "neutral").replace("negative", "neutral")
        others = [flipped, neutral][: labels - 1]
        out.append(Request(r.id, r.messages, r.seed, tuple([{"role": "user", "content": o}] for o in others)))
    return out


def test_a_refill_of_very_different_lengths_prefills_in_batches_with_the_texts_each_gets_alone(monkeypatch):
    """A refill's prompts are prefilled in batches of similar length (`decode.length_batches`):
    here every request's guidance prompts are far longer or far shorter than its own, so they land
    in another batch, and must still guide it as they do when it runs alone (fp32)."""
    extra = " Say how it arrived, what the box held and how the first week went." * 2
    requests = []
    for i, r in enumerate(_guided_requests(3)):
        own, other = (extra, "") if i % 2 else ("", extra)
        negatives = tuple([{"role": "user", "content": n[0]["content"] + other}] for n in r.negatives)
        requests.append(
            Request(r.id, [{"role": "user", "content": r.messages[0]["content"] + own}], r.seed, negatives)
        )
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=3 * len(requests)))
    params = GenerationParams(max_new_tokens=12, temperature=0.9, guidance_scale=2.0)
    splits: list[list[list[int]]] = []
    split = decode.length_batches
    monkeypatch.setattr(decode, "length_batches", lambda lengths: splits.append(split(lengths)) or splits[-1])
    together = {c.id: c.text for c in backend.generate(requests, params)}
    assert len(splits) == 1 and len(splits[0]) == 2, "one refill, in a short and a long batch"
    alone = {r.id: c.text for r in requests for c in backend.generate([r], params)}
    assert together == alone


@pytest.mark.slow
@pytest.mark.parametrize(("horizon", "labels"), [(None, 2), (5, 2), (None, 3)])
def test_guidance_matches_a_reference_cfg_step_by_step(horizon, labels):
    """fp32 greedy guided decoding equals a plain loop over full forwards of all prompts with
    logits = neg + γ·(pos − neg) in log-probs, neg the mean over the other labels' prompts (for the
    first `horizon` tokens, then the prompt alone): the grouped rows, cache, refill and the
    guidance rows leaving change nothing."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=4))
    params = GenerationParams(max_new_tokens=16, temperature=0, guidance_scale=2.0, guidance_tokens=horizon)
    requests = _guided_requests(labels)
    ours = {c.id: c for c in backend.generate(requests, params)}
    model, tok = backend.loaded.model, backend.loaded.tokenizer
    eos = set(backend.eos.tolist())
    for req in requests[:2]:
        pos, negs = backend.encode(req.messages), [backend.encode(n) for n in req.negatives]
        made: list[int] = []
        while len(made) < 16:
            with torch.inference_mode():
                lp = torch.log_softmax(model(torch.tensor([pos + made])).logits[0, -1].float(), -1)
                ln = torch.stack(
                    [
                        torch.log_softmax(model(torch.tensor([n + made])).logits[0, -1].float(), -1)
                        for n in negs
                    ]
                ).mean(0)
            guided = horizon is None or len(made) < horizon
            made.append(int((ln + 2.0 * (lp - ln) if guided else lp).argmax()))
            if made[-1] in eos:
                break
        ended = made[-1] in eos
        assert ours[req.id].text == tok.decode(made[:-1] if ended else made, skip_special_tokens=True)


def test_guidance_changes_outputs_and_is_independent_of_batch_composition():
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=6))
    plain = GenerationParams(max_new_tokens=16, temperature=0.9)
    guided = plain.model_copy(update={"guidance_scale": 2.0})
    unguided = {c.id: c.text for c in backend.generate(_guided_requests(), plain)}
    assert unguided == {c.id: c.text for c in backend.generate(_requests(), plain)}, "γ = 1 ignores negatives"
    together = {c.id: c.text for c in backend.generate(_guided_requests(), guided)}
    backend.batch_size = 3  # one pair and a half: refills split differently
    apart = {c.id: c.text for c in backend.generate(_guided_requests()[::-1], guided)}
    assert together == apart
    assert sum(together[k] != unguided[k] for k in together) >= len(PRODUCTS) - 1


def test_guidance_settings_enter_the_fingerprint_only_when_on():
    """Caches made before the guidance options existed, or with guidance off, stay valid."""
    plain = GenerationParams()
    assert GenerationParams(guidance_tokens=8).fingerprint_params() == plain.fingerprint_params()
    guided = GenerationParams(guidance_scale=2.0)
    assert (
        "guidance_tokens" not in guided.fingerprint_params()
        and "guidance_scale" in guided.fingerprint_params()
    )
    assert (
        GenerationParams(guidance_scale=2.0, guidance_tokens=8).fingerprint_params()["guidance_tokens"] == 8
    )


@pytest.mark.parametrize("choices", [["yes", "no"], ["very good", "very bad"]])
def test_scores_in_length_sorted_batches_belong_to_their_prompts(choices):
    """Batches are formed by prompt length; each row's scores must still be its own prompt's,
    equal (fp32) to scoring that prompt alone. 'very …' shares a first token: the full path."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=2))
    texts = ["Great.", "It broke after a week and support never answered my emails at all.", "Fine, I guess."]
    prompts = [[{"role": "user", "content": f"Text: {t}\n\nIs this text good? Answer."}] for t in texts]
    together = backend.score(prompts, choices)
    alone = [backend.score([p], choices)[0] for p in prompts]
    assert together.shape == (3, 2)
    assert np.allclose(together, np.array(alone), atol=1e-4)


def test_choices_that_share_a_first_token_score_as_full_sequences_would():
    """fp32: each prompt prefilled once and every choice continued from its cache gives the
    log-likelihood a plain forward over prompt + choice gives."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=5))
    choices = ["top up failed", "top up limits", "pending top up"]
    texts = ["My top-up did not go through.", "How much can I add at most?", "Still waiting for it."]
    prompts = [[{"role": "user", "content": f"Which intent? Text: {t}"}] for t in texts]
    ours = backend.score(prompts, choices)
    tok, model = backend.loaded.tokenizer, backend.loaded.model
    for i, p in enumerate(prompts):
        ids = backend.encode(p)
        for j, c in enumerate(choices):
            c_ids = tok(c, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(model(torch.tensor([ids + c_ids])).logits[0].float(), -1)
            steps = logp[len(ids) - 1 : len(ids) - 1 + len(c_ids)]
            want = float(steps.gather(-1, torch.tensor(c_ids)[:, None]).sum())
            assert abs(ours[i, j] - want) < 1e-3, (i, j, ours[i, j], want)
    assert len({tok(c, add_special_tokens=False)["input_ids"][0] for c in choices}) < len(choices)
