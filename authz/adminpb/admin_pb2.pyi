from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EvictTokenRequest(_message.Message):
    __slots__ = ("token", "token_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class EvictSubjectRequest(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...

class PurgeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EvictResponse(_message.Message):
    __slots__ = ("evicted",)
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    evicted: int
    def __init__(self, evicted: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("entries", "negative_entries", "bytes", "max_entries", "max_bytes", "hits", "misses", "negative_hits", "stale_served", "l2_hits", "singleflight_joins", "lru_evictions", "redis_enabled")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_HITS_FIELD_NUMBER: _ClassVar[int]
    STALE_SERVED_FIELD_NUMBER: _ClassVar[int]
    L2_HITS_FIELD_NUMBER: _ClassVar[int]
    SINGLEFLIGHT_JOINS_FIELD_NUMBER: _ClassVar[int]
    LRU_EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    REDIS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    entries: int
    negative_entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    hits: int
    misses: int
    negative_hits: int
    stale_served: int
    l2_hits: int
    singleflight_joins: int
    lru_evictions: int
    redis_enabled: bool
    def __init__(self, entries: _Optional[int] = ..., negative_entries: _Optional[int] = ..., bytes: _Optional[int] = ..., max_entries: _Optional[int] = ..., max_bytes: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., negative_hits: _Optional[int] = ..., stale_served: _Optional[int] = ..., l2_hits: _Optional[int] = ..., singleflight_joins: _Optional[int] = ..., lru_evictions: _Optional[int] = ..., redis_enabled: _Optional[bool] = ...) -> None: ...
