"""One helper for every line printed from an artifact or an error (docs/README.md module map).

Config values, card fields, file names and error messages can come from a downloaded repo;
printed raw, a control character could move the cursor, recolour or rewrite the terminal, or
split one error into several lines. :func:`printable` escapes them.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object) -> str:
    """``str(value)`` with control and format characters (ESC, newlines, bidi overrides)
    written as ``\\xNN`` / ``\\uNNNN`` escapes, so the result is one inert line."""
    text = str(value)
    return "".join(
        _escape(ch) if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
