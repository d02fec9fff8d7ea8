"""Settings (one typed object, persisted as JSON) and secrets (never persisted, always
redacted)."""

from ._secrets import (
    MASK,
    SECRET_NAMES,
    RedactingFilter,
    SecretError,
    install_redaction,
    redact,
    register_secret,
    resolve_secret,
    resolve_secret_with_source,
    secret_status,
    set_secret,
)
from ._settings import (
    ENGINES,
    TUNNELS,
    WEBUIS,
    Settings,
    SettingsError,
    load_settings,
    save_settings,
    settings_path,
)

# Mask secrets in every "sdpanel.*" log record from the moment settings exist (the event
# bus imports this module, so every service is covered without remembering to call it).
install_redaction()

__all__ = [
    "ENGINES",
    "MASK",
    "SECRET_NAMES",
    "TUNNELS",
    "WEBUIS",
    "RedactingFilter",
    "SecretError",
    "Settings",
    "SettingsError",
    "install_redaction",
    "load_settings",
    "redact",
    "register_secret",
    "resolve_secret",
    "resolve_secret_with_source",
    "save_settings",
    "secret_status",
    "set_secret",
    "settings_path",
]
