"""The delivery pipeline every platform shares, and what it needs: deliveries and their one
wire format (``delivery``), the pipeline itself (``core``), the bot's turn as the session core
runs it (``turn``), the deferral of slow work (``deferral``), the serial queue of busy items
(``serial``) and their group commits (``hot``), timers (``timers``) and the membership of
shared channel states (``membership``).

Nothing here imports a platform (``handlers.slack``, ``handlers.messenger``), not even lazily:
a platform is an adapter the pipeline is handed (:class:`Platform`). The pipeline's public
names are exported here.
"""

from __future__ import annotations

from handlers.pipeline.core import (
    INLINE_SCHEDULES,
    NO_DEADLINE,
    Answer,
    Deadline,
    Pipeline,
    Platform,
)
from handlers.pipeline.turn import REMARK, TIMER_GONE, bot_turn, new_conversation, replies_of

__all__ = [
    "INLINE_SCHEDULES",
    "NO_DEADLINE",
    "REMARK",
    "TIMER_GONE",
    "Answer",
    "Deadline",
    "Pipeline",
    "Platform",
    "bot_turn",
    "new_conversation",
    "replies_of",
]
