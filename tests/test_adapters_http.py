"""HTTP API against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from convrec.adapters.http import create_app
from convrec.knowledge.cache import EmbeddingCache
from convrec.recommender import Recommender

LATE = [{"role": "user", "content": "My order is a week late and the tracking hasn't moved."}]
HOST = {"X-User-Id": "u-1", "X-Conversation-Id": "chat-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(world_workspace, tmp_path_factory, minilm) -> Iterator[tuple[httpx.Client, Recommender]]:
    """One server for the module, on its own copy of the world."""
    root = tmp_path_factory.mktemp("http") / "ws"
    shutil.copytree(world_workspace, root)
    rec = Recommender(workspace=root,
                      encoder=minilm.with_cache(EmbeddingCache(root / "embeddings.sqlite")))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, rec
    server.should_exit = True
    thread.join(timeout=10)
    rec.close()


def test_health_and_openapi(api):
    client, _ = api
    assert client.get("/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/health", "/v1/suggest", "/v1/feedback"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_suggest_for_the_header_user(api):
    client, rec = api
    response = client.post("/v1/suggest", json={"conversation": LATE, "k": 2},
                           headers={"X-User-Id": "u-suggest", "X-Conversation-Id": "chat-s"})
    assert response.status_code == 200
    body = response.json()
    assert body["surfaced"] and body["suggestions"][0]["id"] == "shipping-delays"
    assert body["suggestions"][0]["url"].startswith("https://")
    impressions = rec.history("u-suggest").impressions
    assert [i.item_id for i in impressions] == [s["id"] for s in body["suggestions"]]


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"conversation": LATE, "k": 11}, 422, "invalid_arguments", "k"),
    ({"conversation": LATE, "k": "two"}, 422, "invalid_arguments", "k"),
    ({"conversation": LATE, "kinds": ["video"]}, 422, "invalid_arguments", "kinds.0"),
    ({}, 422, "invalid_arguments", "conversation"),
    ({"conversation": LATE, "user_id": "intruder"}, 422, "reserved_argument", "user_id"),
    ({"conversation": LATE, "tenant": "other"}, 422, "reserved_argument", "tenant"),
    ({"conversation": "User: " + "a" * 20_001}, 413, "conversation_too_large", "conversation"),
])
def test_suggest_errors_are_structured(api, body, status, code, field):
    client, rec = api
    response = client.post("/v1/suggest", json=body, headers=HOST)
    assert response.status_code == status
    error = response.json()
    assert error["error"] is True and error["code"] == code
    assert any(d["field"] == field for d in error["details"]), error
    assert rec.history("intruder").impressions == []


def test_invalid_json_body(api):
    client, _ = api
    response = client.post("/v1/suggest", content=b"{oops",
                           headers=HOST | {"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "(body)"


def test_feedback_from_headers(api):
    client, rec = api
    headers = {"X-User-Id": "u-fb", "X-Conversation-Id": "chat-fb"}
    response = client.post("/v1/feedback", json={"item_id": "shipping-delays",
                                                 "action": "not_helpful"}, headers=headers)
    assert response.status_code == 200 and response.json()["recorded"] is True
    (event,) = rec.history("u-fb").events
    assert (event.type, event.value, event.conversation_id) == ("rate", 0.0, "chat-fb")


def test_feedback_errors(api):
    client, _ = api
    response = client.post("/v1/feedback", json={"item_id": "shipping-delays",
                                                 "action": "clicked"})
    assert response.status_code == 400 and response.json()["code"] == "no_user"
    response = client.post("/v1/feedback", json={"item_id": "nope", "action": "clicked"},
                           headers=HOST)
    assert response.status_code == 404 and response.json()["code"] == "unknown_item"


def test_tenant_header_selects_the_store(api):
    client, _ = api
    response = client.post("/v1/suggest", json={"conversation": LATE},
                           headers={"X-Tenant": "another-store"})
    assert response.status_code == 200 and response.json()["surfaced"] is False
