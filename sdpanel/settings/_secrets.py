"""Secrets (API tokens) and the one redaction function that keeps them out of every output.

Resolution order for a secret: a panel field (in memory only) > the environment >
Colab ``userdata`` > Kaggle secrets. Every value we resolve is registered with the
redactor, and the redactor also masks whatever the secret environment variables hold right
now, so a token reaching a log line, an error message or a saved file comes out as ``***``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping

SECRET_NAMES: tuple[str, ...] = ("CIVITAI_TOKEN", "HF_TOKEN", "NGROK_TOKEN", "ZROK_TOKEN")
MASK = "***"

# Shorter values are not real tokens; masking every "abc" in every log line would destroy
# the text without protecting anything.
_MIN_SECRET_LEN = 6

log = logging.getLogger("sdpanel.settings")

_lock = threading.Lock()
_panel: dict[str, str] = {}  # set_secret(): what a user typed into a panel field
_store_cache: dict[str, str] = {}  # values read from Colab/Kaggle stores (slow to ask twice)
_registered: set[str] = set()  # every value the redactor must mask
_value_re: re.Pattern[str] | None = None  # compiled alternation of _registered (longest first)
_value_key: frozenset[str] = frozenset()

# Token-looking text, masked even when we never saw the value: query parameters and
# key=value pairs named like credentials, HTTP Authorization headers, URL passwords and
# well-known token prefixes (Hugging Face "hf_...").
_CRED = r"[\w-]*(?:token|apikey|api_key|secret|password|passwd)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value: URL query parameters, command-line options (--rpc-secret=...), env dumps
    (re.compile(r"(?i)\b(" + _CRED + r")=([^\s&\"',;]+)"), r"\1=" + MASK),
    # "token": "value" in JSON
    (re.compile(r"(?i)(\"" + _CRED + r"\"\s*:\s*\")([^\"]+)(\")"), r"\1" + MASK + r"\3"),
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*[\"']?(?:bearer|token|basic)\s+)([^\s\"',;]+)"),
     r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"), r"\1" + MASK),
    # user:password@host in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)"), r"\1" + MASK + r"\3"),
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}\b"), MASK),
)
# One cheap search decides whether the patterns above can match at all: most log lines
# (progress, paths) contain none of these words and skip the six substitutions.
_TRIGGER = re.compile(r"(?i)token|apikey|api_key|secret|passw|authoriz|bearer|@|hf_")


class SecretError(ValueError):
    """A secret name we do not know."""


def _check_name(name: str) -> str:
    upper = name.upper()
    if upper not in SECRET_NAMES:
        raise SecretError(f"Unknown secret {name!r}; known secrets: {', '.join(SECRET_NAMES)}")
    return upper


def _env_names(name: str) -> tuple[str, ...]:
    # RunPod hands pod secrets over as RUNPOD_SECRET_<name> environment variables.
    return (name, f"RUNPOD_SECRET_{name}")


def register_secret(value: str | None) -> None:
    """Make the redactor mask ``value`` from now on (any secret: tokens, RPC secrets...)."""
    global _value_re
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value not in _registered:
            _registered.add(value)
            _value_re = None


def set_secret(name: str, value: str | None) -> None:
    """Set a secret from a panel field (kept in memory only, never saved). Empty clears it."""
    key = _check_name(name)
    with _lock:
        if value:
            _panel[key] = value
        else:
            _panel.pop(key, None)
    register_secret(value)


def _from_env(name: str, env: Mapping[str, str]) -> str | None:
    for var in _env_names(name):
        if env.get(var):
            return env[var]
    return None


def _from_colab(name: str) -> str | None:
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        value = userdata.get(name)
    except Exception:  # noqa: BLE001 - not on Colab, secret absent or access refused
        return None
    return str(value) if value else None


def _from_kaggle(name: str) -> str | None:
    try:
        from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]

        value = UserSecretsClient().get_secret(name)
    except Exception:  # noqa: BLE001 - not on Kaggle, secret absent or not attached
        return None
    return str(value) if value else None


def resolve_secret_with_source(name: str, panel_value: str | None = None,
                               env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """Like :func:`resolve_secret` and also say where the value came from
    ("panel", "environment", "colab", "kaggle" or "" when not found)."""
    key = _check_name(name)
    environ = os.environ if env is None else env
    value: str | None = panel_value or _panel.get(key)
    source = "panel" if value else ""
    if not value:
        value, source = _from_env(key, environ), "environment"
    if not value:
        value, source = _store_cache.get(key), "colab/kaggle"
    if not value:
        value, source = _from_colab(key), "colab"
    if not value:
        value, source = _from_kaggle(key), "kaggle"
    if not value:
        return None, ""
    if source in ("colab", "kaggle"):
        with _lock:
            _store_cache[key] = value
    register_secret(value)
    return value, source


def resolve_secret(name: str, panel_value: str | None = None,
                   env: Mapping[str, str] | None = None) -> str | None:
    """The value of secret ``name``: panel field > environment > Colab ``userdata`` >
    Kaggle secrets; ``None`` when none has it. The value is registered with the redactor."""
    return resolve_secret_with_source(name, panel_value, env)[0]


def secret_status(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each secret is set, without asking the platform stores (asking Colab pops a
    permission dialog): "panel", "environment", "colab/kaggle" (read before) or "not set"."""
    environ = os.environ if env is None else env
    status: dict[str, str] = {}
    for key in SECRET_NAMES:
        if _panel.get(key):
            status[key] = "set (panel)"
        elif _from_env(key, environ):
            status[key] = "set (environment)"
        elif _store_cache.get(key):
            status[key] = "set (platform secrets)"
        else:
            status[key] = "not set"
    return status


def _known_values() -> frozenset[str]:
    values = set(_registered)
    for key in SECRET_NAMES:
        for var in _env_names(key):
            v = os.environ.get(var)
            if v and len(v) >= _MIN_SECRET_LEN:
                values.add(v)
    return frozenset(values)


def _value_pattern() -> re.Pattern[str] | None:
    global _value_re, _value_key
    values = _known_values()
    if not values:
        return None
    with _lock:
        if _value_re is None or values != _value_key:
            # Longest first so a value containing another is masked whole.
            alternation = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
            _value_re = re.compile(alternation)
            _value_key = values
        return _value_re


def redact(text: str) -> str:
    """``text`` with every known secret value and every token-looking fragment replaced
    by ``***``. Called on every log line and error message, so it stays cheap."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    pattern = _value_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _TRIGGER.search(text):
        for regex, replacement in _PATTERNS:
            text = regex.sub(replacement, text)
    return text


def _reset_for_tests() -> None:
    """Forget panel values, store cache and registrations (tests only)."""
    global _value_re
    with _lock:
        _panel.clear()
        _store_cache.clear()
        _registered.clear()
        _value_re = None


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message (and traceback) through
    :func:`redact`. Put it on a handler to cover every logger feeding that handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_sdpanel_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string still gets logged, masked
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._sdpanel_redacted = True  # type: ignore[attr-defined]


_installed = False


def install_redaction() -> None:
    """Mask secrets in every record of the "sdpanel" logger and its children.

    A filter on a logger only sees records logged on that very logger, not those that
    propagate from children ("sdpanel.downloads"), so the record factory is wrapped too:
    records whose logger name starts with "sdpanel" are masked as they are created, before
    any handler (pytest's capture, a file handler) can see them. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    logger = logging.getLogger("sdpanel")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)  # type: ignore[arg-type]
        if record.name == "sdpanel" or record.name.startswith("sdpanel."):
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
