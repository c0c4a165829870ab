"""The decode loop's KV cache layer: rows dropped, joined and started without copying the cache;
and how a refill's prompts are split into batches of similar length.

The exactness of decoding through it is tested against `model.generate` and a reference guided
loop in test_backend_transformers.py; these tests pin what each cache operation leaves in place.
"""

from __future__ import annotations

import itertools

import torch

from textsynth.backends.decode import PASS_TOKENS, SlackLayer, length_batches

HEADS, DIM = 2, 3


def _layer(rows: int, length: int, first: float = 0.0) -> SlackLayer:
    """A started layer whose row i holds the value first + i at every position."""
    layer = SlackLayer()
    values = (first + torch.arange(rows, dtype=torch.float32))[:, None, None, None]
    layer.update(
        values.expand(rows, HEADS, length, DIM).clone(), -values.expand(rows, HEADS, length, DIM).clone()
    )
    return layer


def _row_values(t: torch.Tensor) -> list[float]:
    return [float(t[i, 0, -1, 0]) for i in range(t.shape[0])]


def test_moving_rows_copies_only_the_movers_into_the_freed_slots():
    layer = _layer(5, 4)
    layer.update(torch.ones(5, HEADS, 1, DIM), torch.ones(5, HEADS, 1, DIM))  # grows: spare columns
    storage = layer.keys.untyped_storage().data_ptr()
    layer.move_rows([3, 4], [0, 2], 3)  # rows 0 and 2 ended; 3 and 4 take their slots
    assert layer.keys.shape == (3, HEADS, 5, DIM) and layer.length == 5
    assert [float(layer.keys[i, 0, 0, 0]) for i in range(3)] == [3.0, 1.0, 4.0]
    assert [float(layer.values[i, 0, 0, 0]) for i in range(3)] == [-3.0, -1.0, -4.0]
    assert layer.keys.untyped_storage().data_ptr() == storage, "a view of the same buffer"
    layer.update(torch.full((3, HEADS, 1, DIM), 7.0), torch.zeros(3, HEADS, 1, DIM))
    assert layer.keys.untyped_storage().data_ptr() == storage, "the next column is written in place"
    assert _row_values(layer.keys) == [7.0, 7.0, 7.0]


def test_stacking_right_aligns_both_caches_with_zeros_before_the_shorter_one():
    older, newer = _layer(2, 6, first=1.0), _layer(1, 4, first=10.0)
    older.stack([newer], 6)
    assert older.keys.shape == (3, HEADS, 6, DIM) and older.length == 6
    assert older._k is not None and older._k.shape[2] == 6 + SlackLayer.SLACK, "spare columns"
    assert float(older.keys[2, :, :2].abs().sum()) == 0.0, "the shorter cache's leading padding"
    assert _row_values(older.keys) == [1.0, 2.0, 10.0]
    assert _row_values(older.values) == [-1.0, -2.0, -10.0]
    storage = older.keys.untyped_storage().data_ptr()
    older.update(torch.zeros(3, HEADS, 1, DIM), torch.zeros(3, HEADS, 1, DIM))
    assert older.keys.untyped_storage().data_ptr() == storage, "no copy on the next step"


def test_starting_rows_from_a_shared_prefix_leaves_room_for_the_suffix():
    prefix_k = torch.randn(1, HEADS, 4, DIM)
    prefix_v = torch.randn(1, HEADS, 4, DIM)
    layer = SlackLayer()
    layer.start(prefix_k, prefix_v, rows=3, room=5)
    assert torch.equal(layer.keys, prefix_k.expand(3, -1, -1, -1))
    assert torch.equal(layer.values, prefix_v.expand(3, -1, -1, -1))
    storage = layer.keys.untyped_storage().data_ptr()
    suffix = torch.randn(3, HEADS, 5, DIM)
    keys, _ = layer.update(suffix, suffix)
    assert keys.untyped_storage().data_ptr() == storage, "the suffix fits in the room"
    assert torch.equal(keys[:, :, 4:], suffix) and layer.length == 9


def _cost(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) + PASS_TOKENS for b in batches)


def test_length_batches_split_where_padding_costs_more_than_a_pass():
    lengths = [41, 40, 90, 42, 88, 40, 91, 89, 43, 90]
    batches = length_batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[40, 40, 41, 42, 43], [88, 89, 90, 90, 91]]
    assert length_batches([50] * 20) == [list(range(20))], "no padding: one pass"
    assert len(length_batches([50, 51, 52])) == 1, "two tokens of padding do not pay for a pass"


def test_length_batches_are_the_cheapest_split_of_the_sorted_lengths():
    lengths = [3, 70, 12, 150, 71, 9, 148, 30, 5, 72]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = min(  # every split of the sorted order into consecutive runs
        _cost(lengths, [order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))])
        for k in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), k)
    )
    assert _cost(lengths, length_batches(lengths)) == best
