"""IdentityMemo: a value per object, found again only for that very object, bounded."""

from __future__ import annotations

from authz.memo import IdentityMemo


class Thing:
    pass


def test_value_is_found_for_the_same_object_only() -> None:
    memo: IdentityMemo[str] = IdentityMemo()
    a, b = Thing(), Thing()
    assert memo.put(a, "for a") == "for a"
    assert memo.get(a) == "for a" and memo.get(b) is None


def test_a_recycled_id_never_returns_another_objects_value() -> None:
    memo: IdentityMemo[str] = IdentityMemo()
    a = Thing()
    memo.put(a, "for a")
    del a
    newcomers = [Thing() for _ in range(1000)]  # some may get a's old id
    assert all(memo.get(t) is None for t in newcomers)


def test_bounded_and_emptied_when_full() -> None:
    memo: IdentityMemo[int] = IdentityMemo(limit=3)
    things = [Thing() for _ in range(4)]
    for i, t in enumerate(things):
        memo.put(t, i)
    assert memo.get(things[3]) == 3 and all(memo.get(t) is None for t in things[:3])
