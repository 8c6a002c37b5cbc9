"""The Faust codec of the ``visitors`` table: :class:`VisitorState` <-> bytes on the changelog
(and the few :class:`InputPosition` values kept beside the states).

The memory store keeps the live objects, so an event costs no decoding; the
codec runs once per changed visitor per batch (changelog) and on recovery.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from tracker.models.visitor_state import VisitorState
from tracker.streams.positions import InputPosition, is_position_value

CODEC_NAME = "tracker-visitor-state"


class VisitorStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, VisitorState | InputPosition):
            raise TypeError(
                f"the visitors table holds VisitorState and InputPosition values, not {type(obj).__name__}"
            )
        return obj.to_bytes()

    def _loads(self, s: bytes) -> Any:
        if is_position_value(s):
            return InputPosition.from_bytes(s)
        return VisitorState.from_bytes(s)


def register() -> str:
    """Make the codec known to Faust (idempotent); return its name."""
    codecs.register(CODEC_NAME, VisitorStateCodec())
    return CODEC_NAME
