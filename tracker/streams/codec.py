"""The Faust codec of the ``visitors`` table: :class:`VisitorState` <-> bytes on the changelog.

The memory store keeps the live objects, so an event costs no decoding; the
codec runs once per changed visitor per batch (changelog) and on recovery.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from tracker.models.visitor_state import VisitorState

CODEC_NAME = "tracker-visitor-state"


class VisitorStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, VisitorState):
            raise TypeError(f"the visitors table holds VisitorState values, not {type(obj).__name__}")
        return obj.to_bytes()

    def _loads(self, s: bytes) -> Any:
        return VisitorState.from_bytes(s)


def register() -> str:
    """Make the codec known to Faust (idempotent); return its name."""
    codecs.register(CODEC_NAME, VisitorStateCodec())
    return CODEC_NAME
