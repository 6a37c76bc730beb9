"""`hashret serve`: binds loopback by default, read-only unless given a write key (file or
environment, never the command line), allowed hosts, limits."""

from __future__ import annotations

import pytest

from hashret.cli import main
from hashret.store.directory import IndexStore

KEY = "a-write-key-for-the-cli-test-01234"


@pytest.fixture
def captured(monkeypatch):
    """Replace uvicorn.Server.run: record what would be served instead of serving it."""
    import uvicorn

    calls = []

    def fake_run(self, sockets=None):
        from fastapi.testclient import TestClient

        cfg = self.config
        client = TestClient(cfg.app, base_url="http://127.0.0.1")
        auth = {"Authorization": f"Bearer {KEY}"}
        calls.append({"host": cfg.host, "port": cfg.port, "log_level": cfg.log_level, "app": cfg.app,
                      "stats": client.get("/stats", headers=auth).json(),
                      "http": cfg.http, "keep_alive": cfg.timeout_keep_alive})

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)  # make_server's subclass inherits it
    monkeypatch.delenv("HASHRET_WRITE_KEY", raising=False)
    monkeypatch.delenv("HASHRET_READ_KEY", raising=False)
    return calls


def test_serve_binds_loopback_and_is_read_only_by_default(index_copy, captured, capsys):
    assert main(["serve", str(index_copy), "--port", "8123", "--log-level", "warning"]) == 0
    (kw,) = captured
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123 and kw["log_level"] == "warning"
    assert kw["stats"]["writable"] is False and kw["stats"]["items"] == 1438
    assert kw["http"].header_timeout == 10.0  # the guarded protocol, with the default limits
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/" in out and "read-only" in out
    with IndexStore.open(index_copy, writable=True):  # the server never took the writer lock
        pass


def test_a_write_key_from_a_file_or_the_environment_makes_it_writable(index_copy, captured, tmp_path,
                                                                      monkeypatch, capsys):
    key_file = tmp_path / "write.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    assert main(["serve", str(index_copy), "--write-key-file", str(key_file)]) == 0
    monkeypatch.setenv("HASHRET_WRITE_KEY", KEY)
    assert main(["serve", str(index_copy), "--rate-limit", "0", "--header-timeout", "2"]) == 0
    assert main(["serve", str(index_copy), "--read-only"]) == 0  # --read-only wins over a key
    assert [c["stats"]["writable"] for c in captured] == [True, True, False]
    assert captured[1]["http"].header_timeout == 2.0
    assert KEY not in capsys.readouterr().out  # never printed


def test_bad_keys_are_clear_errors(index_copy, captured, tmp_path, monkeypatch, capsys):
    assert main(["serve", str(index_copy), "--write-key-file", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("HASHRET_READ_KEY", "short")
    assert main(["serve", str(index_copy)]) == 2
    err = capsys.readouterr().err
    assert "shorter than 16" in err and "secrets.token_urlsafe" in err and not captured


def test_serve_a_locked_index_with_a_write_key_says_to_drop_it(index_copy, captured, capsys, monkeypatch):
    monkeypatch.setenv("HASHRET_WRITE_KEY", KEY)
    with IndexStore.open(index_copy, writable=True):  # another process is writing
        assert main(["serve", str(index_copy)]) == 2
        assert "without a write key" in capsys.readouterr().err
        assert main(["serve", str(index_copy), "--read-only", "--host", "0.0.0.0",
                     "--allowed-host", "search.example"]) == 0
    (kw,) = captured
    assert kw["host"] == "0.0.0.0" and kw["stats"]["writable"] is False
    hosts = kw["app"].state.access.allowed_hosts
    assert "search.example" in hosts and "127.0.0.1" in hosts and "0.0.0.0" not in hosts


def test_serve_a_missing_index_is_a_clear_error(tmp_path, captured, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err and not captured


def test_a_run_directory_given_as_the_index_says_how_to_build_one(digits_run, captured, capsys):
    assert main(["serve", str(digits_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"hashret serve: error: {digits_run} is a training run, not an index: build one with "
                   f"`hashret index build {digits_run} --out {digits_run}-index`, then "
                   f"`hashret serve {digits_run}-index`")
    assert not captured and not (digits_run / "manifest.json").exists()
    assert main(["index", "info", str(digits_run)]) == 2
    assert f"then `hashret index info {digits_run}-index`" in capsys.readouterr().err
