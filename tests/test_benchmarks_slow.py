"""The benchmarks on the real data sets, end to end (slow: run with `pytest -m slow`).

They read ../shared/data next to the project (never copied into it) and are skipped where it
is absent. Each asserts a floor well below the measured result, so a regression shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.slow


def run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)],
                   check=True, timeout=3600, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                                  "PATH": "/usr/bin:/bin"})
    return json.loads(out.read_text())


@pytest.mark.skipif(not (DATA / "covid-faq").is_dir(), reason="shared COVID FAQ data absent")
def test_faq_benchmark_through_the_plugin(tmp_path):
    result = run("faq.py", "--kb", str(DATA / "covid-faq" / "faq_covidbert.csv"),
                 "--queries", str(ROOT / "benchmarks" / "data" / "faq_dev_queries.jsonl"),
                 "--variant", "default", tmp_path=tmp_path)
    assert (result["n_queries"], result["n_off_topic"]) == (60, 20)
    assert result["recall@3"] >= 0.85 and result["false_surface_rate"] <= 0.10


@pytest.mark.skipif(not (DATA / "movielens-1m").is_dir(), reason="shared MovieLens data absent")
def test_trained_model_beats_the_zero_shot_fallback_on_movielens(tmp_path):
    result = run("movielens.py", "--data", str(DATA / "movielens-1m"), "--quick",
                 "--methods", "zero_shot,ours_content", tmp_path=tmp_path)
    assert result["ours_content"]["test"]["ndcg@10"] > result["zero_shot"]["test"]["ndcg@10"]
