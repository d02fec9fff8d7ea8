"""What to download: the contract between sources (CivitAI, Hugging Face, links, presets)
and the byte movers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port): what a token belongs to. Another port of the same host is
    another origin (CivitAI's storage can be one: it rejects a second auth mechanism)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


@dataclass
class DownloadSpec:
    url: str
    """Where the bytes are. For CivitAI / Hugging Face this is the API URL; the queue
    resolves the redirect itself (token on that request only) before moving bytes."""
    kind: str = "other"
    """A kind id from configs/kinds.json; decides the store folder."""
    filename: str | None = None
    """Expected final file name (from the API); None → Content-Disposition or the URL."""
    size: int | None = None
    sha256: str | None = None
    """Lower-case hex when known."""
    folder: str | None = None
    """Explicit target folder; overrides the kind's store folder."""
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per-host headers: {"civitai.com": {"Authorization": "Bearer …"}}. Never persisted
    with secrets in them: journals store ``secret_hosts`` instead and re-resolve."""
    source: str = "url"
    """"civitai", "huggingface", "github", "preset" or "url"."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Source metadata written to the sidecar (ids, names, base model, trained words …)."""
    priority: int = 0

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def headers_for(self, url: str) -> dict[str, str]:
        """Headers that may be sent to ``url``: only those registered for its own host."""
        host = urlsplit(url).hostname or ""
        return dict(self.headers.get(host, {}))

    def to_public_dict(self) -> dict[str, Any]:
        """A JSON-safe view without any header values (they may hold tokens)."""
        data = asdict(self)
        data["headers"] = {host: sorted(h) for host, h in self.headers.items()}
        return data
