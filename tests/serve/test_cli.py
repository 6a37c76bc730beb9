"""`hashret serve`: binds loopback by default, opens the index as its writer or read-only."""

from __future__ import annotations

import pytest

from hashret.cli import main
from hashret.index.store import IndexStore


@pytest.fixture
def captured(monkeypatch):
    """Replace uvicorn.run: record what would be served instead of serving it."""
    import uvicorn

    calls = []

    def fake_run(app, **kw):
        calls.append((app, kw))
        from fastapi.testclient import TestClient

        client = TestClient(app)
        kw["stats"] = client.get("/stats").json()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


def test_serve_binds_loopback_by_default(index_copy, captured, capsys):
    assert main(["serve", str(index_copy), "--port", "8123", "--log-level", "warning"]) == 0
    (_, kw), = captured
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123 and kw["log_level"] == "warning"
    assert kw["stats"]["writable"] is True and kw["stats"]["items"] == 1438
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    with IndexStore.open(index_copy, writable=True):  # the server let go of the writer lock
        pass


def test_serve_a_locked_index_says_to_use_read_only(index_copy, captured, capsys):
    with IndexStore.open(index_copy, writable=True):  # another process is writing
        assert main(["serve", str(index_copy)]) == 2
        assert "--read-only" in capsys.readouterr().err
        assert main(["serve", str(index_copy), "--read-only", "--host", "0.0.0.0"]) == 0
    (_, kw), = captured
    assert kw["host"] == "0.0.0.0" and kw["stats"]["writable"] is False


def test_serve_a_missing_index_is_a_clear_error(tmp_path, captured, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err and not captured
