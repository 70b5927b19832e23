"""The translation cache is bounded by the bytes it holds, evicts the least recently used first,
and can be seeded with a translation made in another process."""

from __future__ import annotations

import sys

from lua_runtime.luau import TranslationCache, remember_translation, translate, translation_cache
from lua_runtime.luau.limits import CACHE_BYTES


def entry(index: int, size: int) -> tuple[str, str]:
    """A distinct source of ``size`` characters and a translation five times as big."""
    source = f"-- {index}\n".ljust(size, "x")
    return source, source * 5


def test_the_cache_never_holds_more_bytes_than_its_bound() -> None:
    cache = TranslationCache(max_bytes=1024 * 1024)
    entries = [entry(index, 64 * 1024) for index in range(200)]  # 200 of about 390 KB: 78 MB
    for source, lua in entries:
        cache.put(source, lua)
        assert cache.info().bytes <= cache.max_bytes
    kept = cache.info().entries
    assert 0 < kept < 200
    # The most recent ones are the ones kept.
    assert [cache.get(source) is not None for source, _ in entries] == [False] * (200 - kept) + [True] * kept


def test_the_least_recently_used_translation_goes_first() -> None:
    one, two, three = entry(1, 1000), entry(2, 1000), entry(3, 1000)
    cache = TranslationCache(max_bytes=2 * TranslationCache.entry_bytes(*one) + 100)
    cache.put(*one)
    cache.put(*two)
    assert cache.get(one[0]) == one[1]  # one is now more recent than two
    cache.put(*three)
    assert cache.get(two[0]) is None
    assert cache.get(one[0]) == one[1]
    assert cache.get(three[0]) == three[1]
    assert cache.info().hits == 3 and cache.info().misses == 1


def test_a_translation_bigger_than_the_bound_is_not_kept() -> None:
    cache = TranslationCache(max_bytes=10_000)
    cache.put(*entry(1, 1000))
    cache.put(*entry(2, 5000))
    assert cache.get(entry(2, 5000)[0]) is None
    assert cache.get(entry(1, 1000)[0]) is not None


def test_replacing_an_entry_counts_its_bytes_once() -> None:
    cache = TranslationCache(max_bytes=1_000_000)
    source, lua = entry(1, 1000)
    cache.put(source, lua)
    cache.put(source, lua + "x")
    assert cache.info().bytes == sys.getsizeof(source) + sys.getsizeof(lua + "x")
    assert cache.info().entries == 1


def test_the_default_bound_is_bytes_not_entries() -> None:
    assert translation_cache.max_bytes == CACHE_BYTES
    # 2,048 distinct 64 KiB uploads would have held about 0.8 GB in the old cache of 2,048 entries.
    assert CACHE_BYTES < 100 * 1024 * 1024


def test_a_remembered_translation_is_what_translate_returns() -> None:
    source = "local remembered = 1\n"
    lua = translate(source)
    translation_cache.clear()
    remember_translation(source, lua)
    assert translate(source) is lua
    assert translation_cache.info().misses == 0
