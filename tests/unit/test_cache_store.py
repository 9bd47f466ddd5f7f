"""BoundedStore: the L1 LRU map bounded by entry count and by accounted bytes."""

from __future__ import annotations

from authz.cache import BoundedStore


def _keys(store: BoundedStore[str]) -> list[str]:
    return [k for k, _ in store.items()]


def test_get_returns_what_was_put_and_none_for_unknown_keys() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=1000)
    store.put("a", "alpha", 10)
    assert store.get("a") == "alpha"
    assert store.get("b") is None
    assert len(store) == 1
    assert store.bytes == 10


def test_entry_bound_evicts_the_oldest_entry_first() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=3, max_bytes=10_000)
    for key in "abcd":
        store.put(key, key.upper(), 1)
    assert len(store) == 3
    assert store.get("a") is None
    assert _keys(store) == ["b", "c", "d"]
    assert store.evictions == 1


def test_get_refreshes_recency_so_the_least_recently_used_goes() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=3, max_bytes=10_000)
    for key in "abc":
        store.put(key, key, 1)
    assert store.get("a") == "a"  # now b is the least recently used
    store.put("d", "d", 1)
    assert store.get("b") is None
    assert store.get("a") == "a"
    assert store.get("c") == "c"
    assert store.get("d") == "d"


def test_a_miss_does_not_change_the_order() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=2, max_bytes=10_000)
    store.put("a", "a", 1)
    store.put("b", "b", 1)
    assert store.get("zzz") is None
    store.put("c", "c", 1)
    assert _keys(store) == ["b", "c"]


def test_items_lists_without_refreshing_recency() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=2, max_bytes=10_000)
    store.put("a", "a", 1)
    store.put("b", "b", 1)
    assert dict(store.items()) == {"a": "a", "b": "b"}
    store.put("c", "c", 1)
    assert _keys(store) == ["b", "c"]


def test_replacing_a_key_moves_it_to_the_newest_and_recounts_its_bytes() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=2, max_bytes=10_000)
    store.put("a", "a1", 100)
    store.put("b", "b", 10)
    store.put("a", "a2", 40)
    assert len(store) == 2
    assert store.bytes == 50
    assert store.evictions == 0
    store.put("c", "c", 1)  # b is now the oldest
    assert store.get("b") is None
    assert store.get("a") == "a2"


def test_byte_bound_evicts_oldest_until_the_total_fits() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=100, max_bytes=100)
    store.put("a", "a", 40)
    store.put("b", "b", 40)
    store.put("c", "c", 50)  # 130 > 100: a goes (90)
    assert _keys(store) == ["b", "c"]
    assert store.bytes == 90
    store.put("d", "d", 90)  # 180 -> b goes (140) -> c goes (90)
    assert _keys(store) == ["d"]
    assert store.bytes == 90
    assert store.evictions == 3


def test_a_value_exactly_at_the_byte_bound_is_kept() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=100)
    store.put("a", "a", 100)
    assert store.get("a") == "a"
    assert store.bytes == 100


def test_oversize_item_is_not_stored_and_evicts_nothing() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=100)
    store.put("a", "a", 60)
    store.put("huge", "h", 101)
    assert store.get("huge") is None
    assert store.get("a") == "a"
    assert len(store) == 1
    assert store.bytes == 60
    assert store.evictions == 0


def test_oversize_replacement_does_not_leave_the_old_value_behind() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=100)
    store.put("k", "old", 10)
    store.put("k", "new-but-too-big", 101)
    assert store.get("k") != "old"


def test_zero_entry_bound_stores_nothing() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=0, max_bytes=100)
    store.put("a", "a", 1)
    assert store.get("a") is None
    assert len(store) == 0
    assert store.bytes == 0


def test_eviction_counter_counts_every_entry_pushed_out() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=5, max_bytes=10_000)
    for i in range(25):
        store.put(f"k{i}", str(i), 1)
    assert len(store) == 5
    assert store.evictions == 20
    assert _keys(store) == [f"k{i}" for i in range(20, 25)]


def test_delete_returns_whether_it_removed_and_frees_bytes() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=1000)
    store.put("a", "a", 30)
    store.put("b", "b", 20)
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.delete("never") is False
    assert store.get("a") is None
    assert len(store) == 1
    assert store.bytes == 20
    assert store.evictions == 0  # an explicit delete is not an LRU eviction


def test_deleted_space_is_reusable_without_evicting() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=2, max_bytes=100)
    store.put("a", "a", 50)
    store.put("b", "b", 50)
    store.delete("a")
    store.put("c", "c", 50)
    assert store.get("b") == "b"
    assert store.get("c") == "c"
    assert store.evictions == 0


def test_clear_reports_the_count_and_resets_size() -> None:
    store: BoundedStore[str] = BoundedStore(max_entries=10, max_bytes=1000)
    for key in "abc":
        store.put(key, key, 10)
    assert store.clear() == 3
    assert len(store) == 0
    assert store.bytes == 0
    assert store.get("a") is None
    assert store.clear() == 0
    store.put("d", "d", 1000)  # the whole budget is free again
    assert store.get("d") == "d"
