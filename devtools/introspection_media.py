"""Which introspection dialect a caller of the dev AS asks for, by the media types its ``Accept`` header lists."""

from __future__ import annotations

__all__ = ["JSON_MEDIA_TYPE", "JWT_INTROSPECTION_MEDIA_TYPE", "JWT_MEDIA_TYPE", "negotiate"]

JWT_MEDIA_TYPE = "application/jwt"  # Curity's phantom dialect
JWT_INTROSPECTION_MEDIA_TYPE = "application/token-introspection+jwt"  # RFC 9701
JSON_MEDIA_TYPE = "application/json"  # RFC 7662


def negotiate(accept: str) -> str:
    """The introspection dialect ``Accept`` prefers: of the three media types it lists explicitly, the one with the
    highest q > 0, ties going to RFC 9701, then application/jwt, then JSON; JSON when it lists none of them."""
    quality = dict.fromkeys((JWT_INTROSPECTION_MEDIA_TYPE, JWT_MEDIA_TYPE, JSON_MEDIA_TYPE), 0.0)
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        q = next((value for name, _, value in (p.partition("=") for p in params) if name.strip() == "q"), "1")
        if media in quality:
            quality[media] = max(quality[media], float(q) if q.strip().replace(".", "", 1).isdigit() else 0.0)
    best = max(quality, key=quality.__getitem__)  # the first of the highest, in the order above
    return best if quality[best] > 0 else JSON_MEDIA_TYPE
