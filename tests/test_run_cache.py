"""The cache of the session's runs: restored when the key matches, made once, off in CI."""

from __future__ import annotations

import run_cache


def test_an_entry_is_made_once_then_restored(tmp_path):
    made = []

    def make(folder):
        made.append(folder)
        folder.mkdir()
        (folder / "model.keras").write_text("weights")

    entry = tmp_path / "cache" / "key1" / "trained"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_cache.cached(entry, tmp_path / "a" / "scratch", make)
    second = run_cache.cached(entry, tmp_path / "b" / "scratch", make)
    assert len(made) == 1 and (first / "model.keras").read_text() == (second / "model.keras").read_text() == "weights"
    assert not [p.name for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    third = run_cache.cached(None, tmp_path / "c", make)  # no cache: made every time
    assert len(made) == 2 and third.is_dir()


def test_the_key_follows_the_sources_and_caching_is_off_in_ci(monkeypatch, tmp_path):
    key = run_cache.source_key()
    assert key == run_cache.source_key() and len(key) == 24
    monkeypatch.setattr(run_cache, "PACKAGES", (*run_cache.PACKAGES, "another-runtime"))
    assert run_cache.source_key() != key  # a new version (or package) is a new key
    monkeypatch.setenv("TK_TEST_CACHE", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    assert run_cache.cache_dir().parent == tmp_path
    monkeypatch.setenv("CI", "true")
    assert run_cache.cache_dir() is None
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TK_TEST_CACHE", "0")
    assert run_cache.cache_dir() is None


def test_old_keys_are_pruned(tmp_path):
    import os
    import time

    for i in range(run_cache.KEEP + 2):
        (tmp_path / f"key{i}").mkdir()
        os.utime(tmp_path / f"key{i}", (time.time() + i, time.time() + i))
    run_cache._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"key{i}" for i in range(2, run_cache.KEEP + 2)]
