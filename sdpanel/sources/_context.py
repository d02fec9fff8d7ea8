"""What link resolution needs to know: API base URLs, tokens and the clients built on them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._civitai import DEFAULT_BASE_URL, SFW_HOSTS, CivitAIClient, full_catalogue_url
from ._hf import HFClient, hf_endpoint

# Hosts a user may paste that mean "the CivitAI / Hugging Face API we are configured for".
# civitai.red holds the full catalogue since the 2026-04 split; links from all three resolve
# through the configured API (a mirror included), by id.
CIVITAI_ALIASES = SFW_HOSTS | {"civitai.red", "www.civitai.red"}
HF_ALIASES = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


@dataclass
class ResolveContext:
    civitai_base_url: str = DEFAULT_BASE_URL
    hf_endpoint: str = field(default_factory=hf_endpoint)
    civitai_full_catalogue: str | None = None
    """Override of where NSFW-on searches go (default: civitai.red, or the mirror itself)."""
    civitai_token: str | None = None
    hf_token: str | None = None
    cache_dir: Path | None = None
    """API response cache (``<storage>/.sdpanel/cache``); None: no disk cache."""
    probe_links: bool = True
    """HEAD plain links for their file name and size."""
    timeout: float = 30.0
    _civitai: CivitAIClient | None = field(default=None, repr=False)
    _hf: HFClient | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any = None, storage_root: str | os.PathLike[str] | None = None,
                      **overrides: Any) -> ResolveContext:
        """Build from sdpanel settings (``civitai_base_url``, ``hf_base_url``), the secret
        store (CIVITAI_TOKEN, HF_TOKEN) and the storage root (for the cache)."""
        from sdpanel.settings import resolve_secret

        if settings is None:
            try:
                from sdpanel.settings import load_settings

                settings = load_settings(storage_root)
            except Exception:  # noqa: BLE001 - a broken settings file must not stop resolving
                settings = None
        root = storage_root or getattr(settings, "storage", None) or None
        if root is None:
            try:
                from sdpanel.platforms import detect_platform

                root = detect_platform().storage_root or None
            except Exception:  # noqa: BLE001 - no platform info: no disk cache
                root = None
        hf_base = getattr(settings, "hf_base_url", None)
        values: dict[str, Any] = {
            "civitai_base_url": getattr(settings, "civitai_base_url", None) or DEFAULT_BASE_URL,
            "civitai_full_catalogue": getattr(settings, "civitai_full_catalogue_url", None) or None,
            # HF_ENDPOINT is the Hub's own convention and wins over the setting.
            "hf_endpoint": os.environ.get("HF_ENDPOINT") or hf_base or hf_endpoint(),
            "civitai_token": resolve_secret("CIVITAI_TOKEN"),
            "hf_token": resolve_secret("HF_TOKEN"),
            "cache_dir": Path(root) / ".sdpanel" / "cache" if root else None,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def civitai_host(self) -> str:
        return urlsplit(self.civitai_base_url).hostname or ""

    @property
    def hf_host(self) -> str:
        return urlsplit(self.hf_endpoint).hostname or ""

    def is_civitai(self, url: str) -> bool:
        """Is ``url`` on the configured CivitAI API (host and port), its full-catalogue
        twin, or one of civitai.com / .green / .red?"""
        full = self.civitai_full_catalogue or full_catalogue_url(self.civitai_base_url)
        return _origin(url) in (_origin(self.civitai_base_url), _origin(full)) \
            or _origin(url)[0] in CIVITAI_ALIASES

    def is_hf(self, url: str) -> bool:
        return _origin(url) == _origin(self.hf_endpoint) or _origin(url)[0] in HF_ALIASES

    def civitai(self) -> CivitAIClient:
        if self._civitai is None:
            cache = self.cache_dir / "civitai" if self.cache_dir else None
            self._civitai = CivitAIClient(self.civitai_base_url, self.civitai_token,
                                          cache_dir=cache, timeout=self.timeout,
                                          full_catalogue=self.civitai_full_catalogue)
        return self._civitai

    def hf(self) -> HFClient:
        if self._hf is None:
            self._hf = HFClient(self.hf_endpoint, self.hf_token, timeout=self.timeout)
        return self._hf

    def civitai_headers(self) -> dict[str, dict[str, str]]:
        return {self.civitai_host: {"Authorization": f"Bearer {self.civitai_token}"}} if self.civitai_token else {}

    def hf_headers(self) -> dict[str, dict[str, str]]:
        return {self.hf_host: {"Authorization": f"Bearer {self.hf_token}"}} if self.hf_token else {}

    async def aclose(self) -> None:
        for client in (self._civitai, self._hf):
            if client is not None:
                await client.close()
        self._civitai = self._hf = None
