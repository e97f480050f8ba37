"""huggingface_hub and network exceptions as one-line :class:`~samix_hub.errors.HubError`
messages (:func:`hub_errors`), and whether offline mode is on (:func:`is_offline`)."""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from collections.abc import Iterator

from samix_hub.errors import HubError, RepoNotFoundError, first_line

__all__ = ["hub_errors", "is_offline", "printable", "redact_urls"]


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Connection-failure exception classes of whichever HTTP stack huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (
        ("httpx2", ("ConnectError", "TimeoutException", "RemoteProtocolError")),
        ("httpx", ("ConnectError", "TimeoutException", "RemoteProtocolError")),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        with contextlib.suppress(ImportError):
            mod = __import__(module)
            errors += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return tuple(errors)


@contextlib.contextmanager
def hub_errors(
    repo_id: str, revision: str | None, endpoint: str | None, offline: bool = False
) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into one-line :class:`HubError` messages."""
    from huggingface_hub import constants, errors
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    class _Never(Exception):
        pass

    # huggingface_hub >= 2.4 tells an incomplete cached snapshot apart.
    IncompleteSnapshotError = getattr(errors, "IncompleteSnapshotError", _Never)  # noqa: N806
    RemoteEntryNotFoundError = getattr(  # noqa: N806  (EntryNotFoundError before 1.0)
        errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError
    )

    where = redact_urls(endpoint or constants.ENDPOINT)  # never a password in a message
    rev = revision or "main"
    try:
        yield
    except RevisionNotFoundError:
        raise RepoNotFoundError(f"{repo_id}: revision {rev!r} not found on {where}") from None
    except RepositoryNotFoundError:
        raise RepoNotFoundError(
            f"{repo_id}: repository not found on {where} "
            "(a private repo needs --token, HF_TOKEN or `hf auth login`)"
        ) from None
    except RemoteEntryNotFoundError as err:
        raise HubError(f"{repo_id}@{rev}: file not found ({_first_line(err)})") from None
    except IncompleteSnapshotError:
        raise HubError(
            f"{repo_id}@{rev}: the cached copy lacks files this runtime needs and the Hub "
            "cannot be used (offline or unreachable); pull once with network access"
        ) from None
    except LocalEntryNotFoundError as err:
        if offline or is_offline(None) or "outgoing traffic has been disabled" in str(err):
            raise HubError(
                f"{repo_id}@{rev}: not in the local cache, and offline mode is on "
                "(--offline / HF_HUB_OFFLINE=1); pull it once with network access"
            ) from None
        raise HubError(
            f"{repo_id}@{rev}: cannot reach {where} and nothing is cached "
            f"({_first_line(err.__cause__ or err)})"
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        if status in (401, 403):
            raise HubError(
                f"{repo_id}: not authorised on {where} (HTTP {status}); "
                "pass --token, set HF_TOKEN or run `hf auth login`"
            ) from None
        raise HubError(f"{repo_id}: Hub error HTTP {status}: {_first_line(err)}") from None
    except _connection_errors() as err:
        raise HubError(f"{repo_id}: cannot reach {where} ({_first_line(err)})") from None
    except ValueError as err:
        # huggingface_hub refuses repo file names with '..' segments or absolute paths.
        if "filename" not in str(err).lower():
            raise
        raise HubError(
            f"{repo_id}@{rev}: unsafe file name in the repo ({_first_line(err)}); "
            "nothing was installed"
        ) from None
    except OSError as err:
        if "Consistency check failed" in str(err):
            raise HubError(
                f"{repo_id}@{rev}: download incomplete or truncated ({_first_line(err)}); "
                "run the same command again to resume"
            ) from None
        raise


def _first_line(err: BaseException) -> str:
    return redact_urls(first_line(err))


def is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    from huggingface_hub import constants

    return bool(constants.is_offline_mode()) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )


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
