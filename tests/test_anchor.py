"""The gate's label-free anchor: the shipped curve moved onto another encoder's cosine scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convrec.pipeline.anchor import (
    MAX_SCALE_FACTOR,
    REFERENCE_MEDIAN,
    REFERENCE_SPREAD,
    anchored_curve,
    reference_texts,
)

QUERY_SETS = sorted((Path(__file__).parent.parent / "benchmarks" / "data").glob("*.jsonl"))
SMALL_TALK = ["thanks, that's everything, have a nice evening", "what's your favourite colour?",
              "tell me something funny about penguins"]
ON_TOPIC = [("my parcel is a week late and the tracking hasn't moved", "late"),
            ("my card was declined at checkout", "declin")]


# -- the reference lines -------------------------------------------------------------------------
def test_reference_lines_are_many_distinct_and_not_taken_from_a_benchmark():
    lines = reference_texts()
    assert len(lines) >= 80
    assert len({t.casefold() for t in lines}) == len(lines)
    assert not any(t.startswith("#") for t in lines)
    asked = set()
    for path in QUERY_SETS:
        for line in path.read_text(encoding="utf-8").splitlines():
            for turn in json.loads(line)["conversation"]:
                asked.add(turn["content"].strip().casefold())
    assert QUERY_SETS and not asked & {t.casefold() for t in lines}


# -- the curve arithmetic (property tests) ---------------------------------------------------
def reference_like(median: float, spread: float, n: int = 101) -> np.ndarray:
    """Scores with exactly this median and interquartile range (uniform around the median)."""
    return median + 2 * spread * (np.linspace(0, 1, n) - 0.5)


scores = st.floats(-0.5, 1.0)
spreads = st.floats(0.005, 0.5)


@given(center=st.floats(0.0, 1.0), scale=st.floats(1.0, 50.0))
def test_the_reference_floor_gives_the_curve_back(center, scale):
    got_center, got_scale, median, spread = anchored_curve(
        center, scale, reference_like(REFERENCE_MEDIAN, REFERENCE_SPREAD))
    assert median == pytest.approx(REFERENCE_MEDIAN)
    assert spread == pytest.approx(REFERENCE_SPREAD)
    assert got_center == pytest.approx(center)
    assert got_scale == pytest.approx(scale)


@given(median=scores, spread=spreads, shift=st.floats(-0.4, 0.4))
def test_a_higher_floor_moves_the_center_as_far_and_keeps_the_slope(median, spread, shift):
    c1, s1, *_ = anchored_curve(0.42, 14.0, reference_like(median, spread))
    c2, s2, *_ = anchored_curve(0.42, 14.0, reference_like(median + shift, spread))
    assert c2 - c1 == pytest.approx(shift, abs=1e-9)
    assert s2 == pytest.approx(s1)
    assert c1 - median == pytest.approx(0.42 - REFERENCE_MEDIAN)  # same distance above


@given(median=scores, spread=spreads, data=st.lists(scores, min_size=2, max_size=60))
@settings(max_examples=60)
def test_the_slope_follows_the_spread_within_bounds(median, spread, data):
    _, scale, _, got = anchored_curve(0.42, 14.0, reference_like(median, spread))
    expected = 14.0 * min(max(REFERENCE_SPREAD / spread, 1 / MAX_SCALE_FACTOR), MAX_SCALE_FACTOR)
    assert scale == pytest.approx(expected)
    _, any_scale, _, _ = anchored_curve(0.42, 14.0, data)  # ties, one value: still bounded
    assert 14.0 / MAX_SCALE_FACTOR - 1e-9 <= any_scale <= 14.0 * MAX_SCALE_FACTOR + 1e-9


def test_anchoring_needs_two_scores():
    with pytest.raises(ValueError, match="two reference scores"):
        anchored_curve(0.42, 14.0, [0.3])


# -- on a Recommender ----------------------------------------------------------------------------
class HighCosineEncoder:
    """Packaged MiniLM with every vector pulled toward one direction, so that all cosines run
    about 0.3 higher (as with encoders whose space is anisotropic): a real encoder whose
    scale the shipped curve does not fit."""

    def __new__(cls, minilm, cache_file):
        from convrec.knowledge.cache import EmbeddingCache
        from convrec.knowledge.encoder import ContentEncoder

        class Shifted(ContentEncoder):
            def _encode_texts(self, texts):
                vectors = super()._encode_texts(texts)
                common = np.zeros(vectors.shape[1], dtype=np.float32)
                common[0] = 0.75
                vectors = vectors + common
                return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        encoder = Shifted(name="minilm-shifted", cache=EmbeddingCache(cache_file))
        encoder._model = minilm.model
        return encoder


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    """One embedding cache for the module: the shifted vectors are computed once."""
    return tmp_path_factory.mktemp("shifted") / "embeddings.sqlite"


@pytest.fixture(scope="module")
def articles():
    from convrec.knowledge.loaders import load_items
    from convrec.world import item_paths

    return [i for i in load_items([item_paths()[0]]).items]


def shifted_recommender(minilm, tmp_path, articles, cache_file, **suggest):
    from convrec.knowledge.index import MemoryIndex
    from convrec.recommender import Recommender
    from convrec.settings import Settings, SuggestSettings

    rec = Recommender(Settings(workspace=tmp_path / "ws", suggest=SuggestSettings(**suggest)),
                      encoder=HighCosineEncoder(minilm, cache_file), index=MemoryIndex())
    rec.ingest(articles)
    return rec


def test_the_anchor_keeps_a_high_cosine_encoder_quiet_on_small_talk(minilm, tmp_path, articles,
        cache_file):
    fixed = shifted_recommender(minilm, tmp_path, articles, cache_file, anchor_gate=False)
    # the premise: with the shipped curve this encoder surfaces on small talk
    assert sum(fixed.suggest(t, log=False).surfaced for t in SMALL_TALK) >= 2

    rec = shifted_recommender(minilm, tmp_path, articles, cache_file)
    anchor = rec.gate_anchor()
    assert anchor is not None and anchor.encoder == "minilm-shifted"
    assert anchor.n_items == len(articles) and anchor.n_reference == len(reference_texts())
    assert anchor.center > 0.42 + 0.15  # the off-topic floor is far higher than MiniLM's
    assert rec.gate.center == anchor.center and rec.gate.scale == anchor.scale
    assert not any(rec.suggest(t, log=False).surfaced for t in SMALL_TALK)
    for text, word in ON_TOPIC:
        result = rec.suggest(text, log=False)
        assert result.surfaced, text
        assert word in result.suggestions[0].title.lower(), (text, result.suggestions[0].title)
    rec.close()
    fixed.close()


def test_explicit_curves_and_fitted_gates_win_over_the_anchor(minilm, tmp_path, articles,
        cache_file):
    from convrec.pipeline.gate import Gate

    rec = shifted_recommender(minilm, tmp_path, articles, cache_file, gate_center=0.5)
    assert rec.gate_anchor() is None and rec.gate.center == 0.5  # set by hand: kept
    rec.close()
    rec = shifted_recommender(minilm, tmp_path, articles, cache_file)
    Gate(center=0.61, scale=9.0, threshold=0.5).save(rec.gate_path)
    assert rec.gate.center == 0.61  # calibrated on the user's own decisions: kept
    rec.close()


def test_the_anchor_is_measured_again_when_the_items_change(minilm, tmp_path, articles,
        cache_file):
    rec = shifted_recommender(minilm, tmp_path, articles[:10], cache_file)
    small = rec.gate_anchor()
    assert small is not None and small.n_items == 10
    assert rec.gate_anchor() is small  # cached while nothing changes
    rec.ingest(articles)
    assert rec.gate_anchor().n_items == len(articles)
    rec.close()


def test_packaged_minilm_keeps_the_shipped_curve(world):
    assert world.gate_anchor() is None
    assert (world.gate.center, world.gate.scale) == (0.42, 14.0)
    measured = world.gate_anchor(force=True)  # what the anchor would say: nearly the same
    assert measured.median == pytest.approx(REFERENCE_MEDIAN, abs=0.02)
    assert measured.center == pytest.approx(0.42, abs=0.02)


def test_the_anchor_is_kept_in_the_workspace_for_the_next_process(minilm, tmp_path, articles,
                                                                   cache_file):
    from convrec.recommender import Recommender

    def open_workspace():  # the workspace's own Chroma index, as the CLI opens it
        return Recommender(workspace=tmp_path / "ws", encoder=HighCosineEncoder(minilm,
                                                                                cache_file))

    first = open_workspace()
    first.ingest(articles[:12])
    measured = first.gate_anchor()
    assert measured is not None and first.encoder.stats.encoded_texts >= len(reference_texts())
    first.close()

    second = open_workspace()  # a new process: reads the saved anchor, encodes nothing
    assert second.gate_anchor() == measured and second.encoder.stats.encoded_texts == 0
    second.ingest(articles[12:14])  # the items change: measured again
    assert second.gate_anchor().n_items == 14
    assert second.encoder.stats.encoded_texts >= len(reference_texts())
    second.close()
