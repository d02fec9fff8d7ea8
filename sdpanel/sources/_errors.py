"""Errors raised by the model sources. Each message names the cause and the fix, and is
redacted (it may quote a URL or a server reply that could carry a token)."""

from __future__ import annotations


def _redact(text: str) -> str:
    from sdpanel.settings import redact

    return redact(text)


class SourceError(Exception):
    """Base of every sources error; ``str()`` is a user-facing, redacted message."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        self.message = _redact(message)
        self.status = status
        self.code = code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ApiUnavailableError(SourceError):
    """The API could not be reached (down, timeout, overloaded)."""


class NotFoundError(SourceError):
    """The model, version, repo, revision or file does not exist."""


class AuthRequiredError(SourceError):
    """The resource needs a token (401) or an access grant (403)."""


class RateLimitedError(SourceError):
    """The API kept answering 429/503 after our bounded back-off."""


class LinkError(SourceError):
    """Pasted text could not be turned into a download: a one-line reason."""
