"""cdp.db's helpers."""

from __future__ import annotations

import uuid

from cdp.db import uuid_texts


def test_uuid_texts_are_str_of_each_id():
    ids = [uuid.uuid4() for _ in range(1000)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), "already-text"]
    assert uuid_texts(ids) == [str(i) for i in ids]
    assert sorted(uuid_texts(set(ids[:5]))) == sorted(str(i) for i in ids[:5])
    assert uuid_texts(()) == []
