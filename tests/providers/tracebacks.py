"""What a traceback shows about an error, for tests that keep secrets out of it."""

from __future__ import annotations

import traceback


def everything_shown(exc: BaseException) -> str:
    """The traceback ``logger.exception`` would print, plus the text of every exception
    kept on ``exc`` as a cause or a context, whether or not a traceback would show it."""
    parts = ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop()
        if link is None or link in seen:
            continue
        seen.append(link)
        parts.append(f"{link!r} {link}")
        pending += [link.__cause__, link.__context__]
    return "\n".join(parts)
