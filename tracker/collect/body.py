"""Reading a request body within the collector's limits.

The size limit is enforced twice: on the declared ``Content-Length`` (refuse before
reading) and on the bytes actually received (a missing or lying header cannot
bypass it). The whole read has a deadline, against clients that trickle bytes.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from tracker.errors import (
    BatchTooLargeError,
    BodyReadTimeoutError,
    MalformedBatchError,
    UnsupportedMediaTypeError,
)

# sendBeacon with a string body sends text/plain (a CORS-safelisted type: no preflight).
ACCEPTED_MEDIA_TYPES = frozenset({"", "application/json", "text/plain"})


def check_content_type(content_type: str | None, content_encoding: str | None) -> None:
    """Accept JSON, ``*/*+json`` and ``text/plain`` (parsed as JSON); refuse the rest with a 415."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Content-Type {media_type!r} is not accepted; send application/json or text/plain"
        )
    encoding = (content_encoding or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed"
        )


async def read_body(request: Request, *, max_bytes: int, timeout_seconds: float) -> bytes:
    """The request body, or :class:`BatchTooLargeError` as soon as it exceeds ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise MalformedBatchError(f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > max_bytes:
            raise BatchTooLargeError(
                f"Body is {int(declared)} bytes; the limit is {max_bytes} bytes: split the batch"
            )
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise BatchTooLargeError(f"Body is over the limit of {max_bytes} bytes: split the batch")
    except TimeoutError:
        raise BodyReadTimeoutError(
            f"Body not received within {timeout_seconds:g} s ({len(body)} bytes so far)"
        ) from None
    return bytes(body)
