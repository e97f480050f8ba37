"""One helper for every line printed from an artifact or an error (docs/README.md module map).

Config values, card fields, file names and error messages can come from a downloaded repo;
printed raw, a control character could move the cursor, recolour or rewrite the terminal, or
split one error into several lines. :func:`printable` escapes them, and replaces the
credentials of a URL (``http://user:password@host``) with ``***`` (:func:`redact_urls`).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["printable", "redact_urls"]

#: ``scheme://user[:password]@`` of a URL: the part before ``@`` is a credential.
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def redact_urls(text: str) -> str:
    """``text`` with the user and password of every URL replaced by ``***``."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object) -> str:
    """``str(value)`` with control and format characters (ESC, newlines, bidi overrides)
    written as ``\\xNN`` / ``\\uNNNN`` escapes, so the result is one inert line."""
    text = redact_urls(str(value))
    return "".join(
        _escape(ch) if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
