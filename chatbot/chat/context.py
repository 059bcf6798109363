"""The model input: which messages go to the model, and in what order.

The only place that decides it: messages form a tree (regenerate and edit keep earlier versions),
and "the history" is the path the conversation shows, ending at the reply (``Message.shown``:
the path is in id order, as a message is written after its parent).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from ..extensions import db
from ..llm.base import estimate_tokens
from ..models import Message, Status

# Built once: "this conversation's usable messages before X, newest first".
_HISTORY = (
    select(Message.is_user, Message.content)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        Message.id < bindparam("before_id"),
        Message.shown,
        Message.status != Status.ERROR.value,
        Message.content != "",
    )
    .order_by(Message.id.desc())
)


def model_input(
    conversation_id: int, before_id: int, system_prompt: str, budget: int
) -> list[dict[str, str]]:
    """System prompt + the conversation's messages before ``before_id``, oldest first.

    Rows are streamed newest first and reading stops once ``budget`` tokens are spent, so a
    conversation of thousands of messages costs no more than its recent part. Failed replies
    (status "error", no text) are left out; the newest message always goes in.
    """
    budget -= estimate_tokens(system_prompt)
    picked: list[dict[str, str]] = []
    result = (
        db.session.connection()
        .execution_options(yield_per=128)
        .execute(_HISTORY, {"conversation_id": conversation_id, "before_id": before_id})
    )
    try:
        for is_user, content in result:
            cost = estimate_tokens(content)
            if picked and cost > budget:
                break
            budget -= cost
            picked.append({"role": "user" if is_user else "assistant", "content": content})
    finally:
        result.close()
    picked.append({"role": "system", "content": system_prompt})
    picked.reverse()
    return picked
