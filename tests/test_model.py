"""The sequential model on tiny synthetic data: it learns a determined next item, its
checkpoints round-trip exactly, training is repeatable, and new items are scored from content."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from convrec.model import (
    EVENT_TYPE_INDEX,
    EVENT_TYPES,
    N_TIME_BUCKETS,
    FeatureTables,
    ModelConfig,
    SequentialRecommender,
    TrainConfig,
    UserSequence,
    evaluate,
    leave_one_out,
    load_checkpoint,
    save_checkpoint,
    score_candidates,
    time_gap_buckets,
)
from convrec.model.data import example_batches, training_batches
from convrec.model.evaluate import metrics_from_ranks, rank_examples, ranks_from_scores
from convrec.model.train import full_softmax_loss, sampled_softmax_loss, train

N_ITEMS = 12
DIM = 8


def _sequence(user: str, items: list[int]) -> UserSequence:
    n = len(items)
    return UserSequence(
        user,
        content_row=np.array(items, dtype=np.int64),
        item=np.array(items, dtype=np.int64),
        event_type=np.full(n, EVENT_TYPE_INDEX["view"], dtype=np.int64),
        time_bucket=np.ones(n, dtype=np.int64),
    )


def _cycles(n_users: int = 60, seed: int = 0) -> list[UserSequence]:
    """Each user walks the cycle 1 -> 2 -> ... -> N -> 1 from a random start: the next item is
    always determined by the current one."""
    rng = np.random.default_rng(seed)
    seqs = []
    for u in range(n_users):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(6, 15))
        seqs.append(_sequence(f"u{u}", [(start + t) % N_ITEMS + 1 for t in range(length)]))
    return seqs


def _tables(use_ids: bool = True) -> FeatureTables:
    """Random content vectors for items 1..N (row 0 = zeros); identity id mapping."""
    g = torch.Generator().manual_seed(1)
    content = torch.cat([torch.zeros(1, DIM), torch.randn(N_ITEMS, DIM, generator=g)])
    id_index = torch.arange(N_ITEMS + 1) if use_ids else torch.zeros(N_ITEMS + 1, dtype=torch.int64)
    return FeatureTables(content, id_index)


def _configs(**model: object) -> tuple[ModelConfig, TrainConfig]:
    mc = ModelConfig(n_items=N_ITEMS + 1, content_dim=DIM, d_model=16, n_layers=1, max_len=16)
    mc = replace(mc, **{"dropout": 0.0, **model})
    tc = TrainConfig(epochs=40, batch_size=16, lr=1e-2, patience=40, seed=7, progress=False)
    return mc, tc


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is fastest, and kind to the other processes on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cycles():
    return leave_one_out(_cycles())


@pytest.fixture(scope="module")
def trained(cycles):
    mc, tc = _configs()
    return train(mc, tc, _tables(), cycles.train, cycles.valid)


# --- pieces --------------------------------------------------------------------------------------
def test_event_types_vocabulary():
    assert EVENT_TYPES[0] == "pad"
    assert {"user_turn", "assistant_turn", "view", "purchase", "dismiss", "search"} <= set(
        EVENT_TYPES
    )
    assert EVENT_TYPE_INDEX["pad"] == 0


def test_time_gap_buckets_are_log_scale_with_unknown():
    b = time_gap_buckets([100.0, 100.0, 101.0, 104.0, None, 2000.0, 1e12])
    assert b[0] == 1  # first event: unknown gap
    assert b[1] == 2  # 0 s
    assert b[2] == 3  # 1 s
    assert b[3] == 4  # 3 s: floor(log2(4)) = 2
    assert b[4] == 1 and b[5] == 1  # next to an unknown time
    assert b[6] == N_TIME_BUCKETS - 1  # capped
    assert len(time_gap_buckets([])) == 0


def test_leave_one_out_holds_out_last_two_targets():
    seq = _sequence("u", [3, 1, 4, 1, 5])
    split = leave_one_out([seq])
    assert split.test[0].target == 5 and list(split.test[0].history.item) == [3, 1, 4, 1]
    assert split.valid[0].target == 1 and list(split.valid[0].history.item) == [3, 1, 4]
    assert list(split.train[0].item) == [3, 1, 4]


def test_turns_and_dismissals_are_never_targets():
    turn, view, dismiss = (EVENT_TYPE_INDEX[t] for t in ("user_turn", "view", "dismiss"))
    seq = UserSequence(
        "u",
        content_row=np.array([13, 2, 14, 3, 4]),
        item=np.array([0, 2, 0, 3, 4]),
        event_type=np.array([turn, view, turn, dismiss, view]),
        time_bucket=np.ones(5, dtype=np.int64),
    )
    assert list(seq.target_positions()) == [1, 4]
    # each position predicts the next target event after it
    assert list(seq.next_targets()) == [2, 4, 4, 4, 0]


def test_training_batches_are_left_padded_and_cover_every_user():
    seqs = _cycles(10)
    batches = list(training_batches(seqs, 4, 8, np.random.default_rng(0)))
    assert sum(len(b.mask) for b in batches) == 10
    for b in batches:
        assert b.mask.shape[1] <= 8
        assert bool(b.mask[:, -1].all())  # newest event at the end
        assert not bool(b.target[~b.mask].any())  # no targets on padding


def test_ranks_filter_history_but_not_the_target():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    target = torch.tensor([3])
    assert ranks_from_scores(scores, target).item() == 2
    seen = torch.tensor([[0, 1], [0, 3]])  # item 1 filtered; the target itself never is
    assert ranks_from_scores(scores, target, seen).item() == 1
    m = metrics_from_ranks(torch.tensor([0, 1, 20]), ks=(10,))
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 0.5) / 3)


@pytest.mark.parametrize("chunk", [1, 3, 512])
def test_fused_softmax_loss_matches_cross_entropy(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, generator=g, requires_grad=True)
    reps = torch.randn(10, 5, generator=g, requires_grad=True)
    target = torch.tensor([1, 2, 3, 9, 9, 4, 1])
    loss = full_softmax_loss(h, target, reps, chunk=chunk) * 2.5  # a non-unit upstream gradient
    loss.backward()
    gh, gr = h.grad.clone(), reps.grad.clone()
    h.grad, reps.grad = None, None
    ref = torch.nn.functional.cross_entropy(h @ reps[1:].T, target - 1) * 2.5
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(gh, h.grad, atol=1e-6) and torch.allclose(gr, reps.grad, atol=1e-6)


def test_sampled_softmax_loss_is_finite():
    h, reps = torch.randn(6, 4), torch.randn(11, 4)
    log_q = torch.log(torch.full((11,), 0.1))
    loss = sampled_softmax_loss(h, torch.tensor([1, 2, 3, 4, 5, 6]), reps, log_q, 8)
    assert torch.isfinite(loss)


def test_config_rejects_a_model_without_item_features():
    with pytest.raises(ValueError):
        ModelConfig(n_items=3, use_content=False, use_item_ids=False)


# --- learning ------------------------------------------------------------------------------------
def test_learns_a_determined_next_item(cycles, trained):
    ranks = rank_examples(trained.model, _tables(), cycles.test)
    assert (ranks == 0).float().mean().item() >= 0.95  # HR@1
    assert trained.best_valid["ndcg@10"] > 0.9
    assert not trained.model.training


@pytest.mark.parametrize(
    "features", [{"use_item_ids": False}, {"use_content": False}, {"use_time": False}]
)
def test_ablations_still_learn(cycles, features):
    mc, tc = _configs(**features)
    tables = _tables(use_ids=features.get("use_item_ids", True))
    result = train(mc, replace(tc, epochs=30), tables, cycles.train, cycles.valid)
    assert evaluate(result.model, tables, cycles.test)["hr@10"] >= 0.95


def test_sampled_softmax_training_learns(cycles):
    mc, tc = _configs()
    tc = replace(tc, loss="sampled", n_negatives=6)
    result = train(mc, tc, _tables(), cycles.train, cycles.valid)
    assert evaluate(result.model, _tables(), cycles.test)["hr@10"] >= 0.9


def test_cosine_schedule_anneals_to_zero(cycles):
    mc, tc = _configs()
    tc = replace(tc, epochs=20, lr_schedule="cosine")
    result = train(mc, tc, _tables(), cycles.train, cycles.valid)
    lrs = [row["lr"] for row in result.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.02 * tc.lr
    assert evaluate(result.model, _tables(), cycles.test)["hr@10"] >= 0.95


def test_same_seed_same_scores(cycles):
    mc, tc = _configs(dropout=0.2)
    tc = replace(tc, epochs=3)
    a = train(mc, tc, _tables(), cycles.train, cycles.valid)
    b = train(mc, tc, _tables(), cycles.train, cycles.valid)
    ra = rank_examples(a.model, _tables(), cycles.test)
    assert torch.equal(ra, rank_examples(b.model, _tables(), cycles.test))
    for (name, pa), pb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name


def _states(model: SequentialRecommender, tables: FeatureTables, examples) -> torch.Tensor:
    batch = next(example_batches(examples, 1000, model.cfg.max_len))
    return model.user_state(*tables.inputs(batch, model.cfg.use_content))


def test_checkpoint_round_trip_gives_identical_scores(tmp_path, cycles, trained):
    ids = [f"item-{i}" for i in range(1, N_ITEMS + 1)]
    save_checkpoint(tmp_path, trained.model, ids, encoder="stand-in", metadata={"note": "x"})
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
    loaded = load_checkpoint(tmp_path)
    assert loaded.item_ids == ids and loaded.encoder == "stand-in"
    assert loaded.content_dim == DIM and loaded.metadata == {"note": "x"}
    assert loaded.config == trained.model.cfg and not loaded.model.training
    assert loaded.id_rows(["item-3", "brand-new"]) == [3, 0]
    tables = _tables()
    s1 = score_candidates(
        trained.model, _states(trained.model, tables, cycles.test), tables.content, tables.id_index
    )
    s2 = score_candidates(
        loaded.model, _states(loaded.model, tables, cycles.test), tables.content, tables.id_index
    )
    assert torch.equal(s1, s2)


def test_loading_a_checkpoint_does_not_import_training_code(tmp_path, trained):
    save_checkpoint(tmp_path, trained.model, [str(i) for i in range(N_ITEMS)], encoder=None)
    code = (
        "import sys; from convrec.model import load_checkpoint; "
        f"load_checkpoint({str(tmp_path)!r}); "
        "assert 'convrec.model.train' not in sys.modules, 'training imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_new_item_is_scored_from_content(cycles):
    """A content-only model: a brand-new item (no id embedding) whose content equals the true
    next item's content takes that item's place at the top."""
    mc, tc = _configs(use_item_ids=False)
    tables = _tables(use_ids=False)
    model = train(mc, tc, tables, cycles.train, cycles.valid).model
    examples = cycles.test[:20]
    states = _states(model, tables, examples)
    targets = torch.tensor([ex.target for ex in examples])
    for row, target in enumerate(targets.tolist()):
        others = [i for i in range(1, N_ITEMS + 1) if i != target]
        content = torch.cat([tables.content[others], tables.content[target][None]])
        scores = score_candidates(
            model, states[row : row + 1], content, torch.zeros(N_ITEMS, dtype=torch.int64)
        )
        assert scores.argmax().item() == N_ITEMS - 1  # the new item, last in the list


def test_unknown_items_get_no_id_embedding(trained):
    model = trained.model
    assert torch.count_nonzero(model.item_emb.weight[0]) == 0
    content = torch.randn(3, DIM)
    reps = model.item_representations(content, torch.zeros(3, dtype=torch.int64))
    assert torch.allclose(reps, model.content_proj(content))


def test_user_state_reads_the_last_real_token_whatever_the_padding(trained):
    model = trained.model
    seq = torch.tensor([[3, 4, 5]])
    kinds = torch.full_like(seq, EVENT_TYPE_INDEX["view"])
    tables = _tables()
    left = model.user_state(
        tables.content[torch.tensor([[0, 3, 4, 5]])],
        torch.tensor([[0, 3, 4, 5]]),
        torch.cat([torch.zeros(1, 1, dtype=torch.int64), kinds], 1),
        torch.tensor([[0, 1, 1, 1]]),
        torch.tensor([[False, True, True, True]]),
    )
    plain = model.user_state(
        tables.content[seq],
        seq,
        kinds,
        torch.ones_like(seq),
        torch.ones_like(seq, dtype=torch.bool),
    )
    assert torch.allclose(left, plain, atol=1e-5)
