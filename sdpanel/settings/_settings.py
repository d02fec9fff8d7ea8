"""The one typed settings object: defaults, JSON file, environment, notebook parameters.

Precedence (later wins): defaults < ``<storage>/.sdpanel/settings.json`` < environment
(``SDPANEL_<FIELD>``) < explicit parameters (notebook cell, panel). Secrets are not
settings: they live in ``_secrets`` and never reach the JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from ._secrets import SECRET_NAMES, redact, secret_status, set_secret

log = logging.getLogger("sdpanel.settings")

SETTINGS_FILE = "settings.json"
ENV_PREFIX = "SDPANEL_"

WEBUIS = ("comfyui", "forge", "a1111", "reforge", "forge-classic", "forge-neo", "sd-ux", "sdnext")
TUNNELS = ("none", "cloudflared", "ngrok", "zrok", "localtunnel", "pinggy")
ENGINES = ("auto", "aria2", "python")


class SettingsError(ValueError):
    """A setting with a bad value; the message names the setting, the value and the fix."""


def _meta(help: str, choices: tuple[str, ...] | None = None, param: bool = True,
          minimum: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"help": help, "param": param}
    if choices is not None:
        meta["choices"] = list(choices)
    if minimum is not None:
        meta["min"] = minimum
    return meta


@dataclass(frozen=True)
class Settings:
    """Every setting a user picks. ``metadata`` drives the notebook's ``#@param`` lines
    ("param": shown in the Settings cell), the CLI's help and the panels."""

    webui: str = field(default="comfyui", metadata=_meta("WebUI to install and launch", WEBUIS))
    model_presets: list[str] = field(default_factory=list, metadata=_meta(
        "Model presets to download (ids from the Models tab, comma-separated)"))
    model_links: list[str] = field(default_factory=list, metadata=_meta(
        "Extra model links: CivitAI / Hugging Face pages or direct URLs (comma-separated)"))
    storage: str = field(default="", metadata=_meta(
        "Storage root for models and outputs (empty: the platform's default)"))
    download_engine: str = field(default="auto", metadata=_meta(
        "Download engine: aria2c when available (auto), always aria2c, or pure Python", ENGINES))
    max_concurrent_downloads: int = field(default=3, metadata=_meta(
        "Files downloaded at the same time", minimum=1))
    connections_per_file: int = field(default=16, metadata=_meta(
        "Parallel connections per file (aria2c -x/-s)", minimum=1))
    tunnel: str = field(default="none", metadata=_meta(
        "Public tunnel to the WebUI (needed on Colab and Kaggle)", TUNNELS))
    gpu_index: int = field(default=0, metadata=_meta("GPU the WebUI runs on", minimum=0))
    launch_args: str = field(default="", metadata=_meta("Extra WebUI command-line arguments"))
    webui_package_url: str = field(default="", metadata=_meta(
        "WebUI package archive (.zip/.tar.zst/.tar.lz4 URL) installed instead of the registry's "
        "sources (mirrors and tests)", param=False))
    webui_python: str = field(default="", metadata=_meta(
        "Python the WebUI runs on: an existing venv folder or interpreter (empty: the venv "
        "the install builds inside the WebUI)", param=False))
    webui_torch: str = field(default="", metadata=_meta(
        "torch packages a new WebUI venv gets, pip style (empty: the registry's, e.g. "
        "'torch torchvision torchaudio')", param=False))
    webui_port: int = field(default=0, metadata=_meta(
        "Port of the WebUI (0: pick a free one)", param=False, minimum=0))
    launch: bool = field(default=False, metadata=_meta(
        "Launch cell: install the WebUI when missing and start it (off: only show the Launch tab)"))
    generate: str = field(default="", metadata=_meta(
        "Launch cell: a prompt to generate (on the WebUI, or the built-in engine when none runs)"))
    generate_options: str = field(default="", metadata=_meta(
        "Options of GENERATE as name=value, e.g. 'steps=20 width=768 seed=42 negative_prompt=\"blurry\"'"))
    keep_alive: bool = field(default=False, metadata=_meta(
        "Keep the Launch cell running while the WebUI is up (hosted notebooks idle out)"))
    audio_muted: bool = field(default=False, metadata=_meta("Mute the sound cues"))
    nsfw: bool = field(default=False, metadata=_meta("Show NSFW models and previews"))
    clean_leftovers: bool = field(default=False, metadata=_meta(
        "Storage cell: delete download leftovers (.part/.aria2 untouched for 10 min) and broken links"))
    clean_caches: bool = field(default=False, metadata=_meta(
        "Storage cell: empty the pip and Hugging Face caches"))
    engine_python: str = field(default="", metadata=_meta(
        "Python that runs the built-in engine (with sdpanel[engine]); empty: this one",
        param=False))
    verify_hashes: bool = field(default=True, metadata=_meta(
        "Check each download's SHA-256 against its source before naming it", param=False))
    civitai_base_url: str = field(default="https://civitai.com", metadata=_meta(
        "CivitAI base URL (tests and mirrors)", param=False))
    civitai_full_catalogue_url: str = field(default="", metadata=_meta(
        "Where searches with NSFW on go (empty: civitai.red for civitai.com, else the base URL)",
        param=False))
    hf_base_url: str = field(default="https://huggingface.co", metadata=_meta(
        "Hugging Face base URL (tests and mirrors)", param=False))

    @classmethod
    def schema(cls) -> list[dict[str, Any]]:
        """One entry per setting, for the notebook generator (``#@param`` lines), the CLI
        and panels: name, type ("str", "int", "bool", "list"), default, help, choices,
        whether it is a notebook param, and its environment variable."""
        hints = get_type_hints(cls)
        defaults = cls()
        rows = []
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            kind = "list" if get_origin(hint) is list else getattr(hint, "__name__", str(hint))
            rows.append({
                "name": f.name,
                "type": kind,
                "default": getattr(defaults, f.name),
                "help": f.metadata["help"],
                "choices": f.metadata.get("choices"),
                "param": f.metadata["param"],
                "env": ENV_PREFIX + f.name.upper(),
            })
        return rows

    # ---- construction -------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "parameters",
                  strict: bool = True) -> Settings:
        """Build from defaults plus ``values`` (converted and validated)."""
        return cls().replace(values, source=source, strict=strict)

    def replace(self, values: Mapping[str, Any] | None = None, *, source: str = "parameters",
                strict: bool = True, **changes: Any) -> Settings:
        """A copy with ``values``/``changes`` applied, converted and validated. Secret
        names among them (e.g. a notebook's ``CIVITAI_TOKEN`` field) go to the secret
        store instead. Unknown names raise when ``strict``, else are logged and skipped."""
        merged = {**(values or {}), **changes}
        hints = get_type_hints(type(self))
        known = {f.name: f for f in dataclasses.fields(self)}
        updates: dict[str, Any] = {}
        for name, raw in merged.items():
            key = name.lower()
            if name.upper() in SECRET_NAMES:
                if raw:
                    set_secret(name.upper(), str(raw))
                continue
            if key not in known:
                message = (f"Unknown setting {name!r} in {source}; known settings: "
                           f"{', '.join(known)}")
                if strict:
                    raise SettingsError(message)
                log.warning(message)
                continue
            updates[key] = _convert(key, raw, hints[key], known[key].metadata, source)
        return dataclasses.replace(self, **updates)

    # ---- output ---------------------------------------------------------------------

    def to_public_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every setting, with anything secret-looking masked."""
        return {k: _mask(v) for k, v in dataclasses.asdict(self).items()}

    def describe(self) -> str:
        """Plain text for headless cells and the CLI: each setting and where secrets
        are set (never their values)."""
        lines = ["sdpanel settings:"]
        width = max(len(n) for n in self.field_names())
        for name, value in self.to_public_dict().items():
            shown = ", ".join(value) if isinstance(value, list) else value
            if shown == "" or shown == []:
                shown = "(none)"
            lines.append(f"  {name.ljust(width)}  {shown}")
        lines.append("secrets:")
        for name, state in secret_status().items():
            lines.append(f"  {name.ljust(width)}  {state}")
        return redact("\n".join(lines))


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


def _convert(name: str, raw: Any, hint: Any, meta: Mapping[str, Any], source: str) -> Any:
    """Turn ``raw`` (a JSON value, a string from the environment or a param) into the
    field's type, then check choices and minimums."""

    def fail(why: str) -> SettingsError:
        return SettingsError(f"Setting {name!r} from {source}: {why} (got {redact(repr(raw))}).")

    origin = get_origin(hint)
    if origin in (Union, types.UnionType):  # Optional[...] — not used yet, keep general
        hint = next(a for a in get_args(hint) if a is not type(None))
        origin = get_origin(hint)
    if hint is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            value = raw.strip().lower() in _TRUE
        elif isinstance(raw, int) and raw in (0, 1):
            value = bool(raw)
        else:
            raise fail("expected true or false")
    elif hint is int:
        if isinstance(raw, bool):
            raise fail("expected a whole number")
        try:
            value = int(raw.strip()) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            raise fail("expected a whole number") from None
        if isinstance(raw, float) and raw != value:
            raise fail("expected a whole number")
        minimum = meta.get("min")
        if minimum is not None and value < minimum:
            raise fail(f"must be at least {minimum}")
    elif origin is list:
        value = _as_list(raw, fail)
    elif hint is str:
        if raw is None:
            value = ""
        elif isinstance(raw, str | int | float) and not isinstance(raw, bool):
            value = str(raw).strip()
        else:
            raise fail("expected text")
    else:  # pragma: no cover - a new field type without a converter is a bug here
        raise TypeError(f"no converter for setting {name!r} of type {hint!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        lowered = str(value).lower()
        if lowered in choices:
            return lowered
        raise fail(f"choose one of {', '.join(choices)}")
    if name.endswith("_base_url") and not str(value).startswith(("http://", "https://")):
        raise fail("expected an http:// or https:// URL")
    return value


def _as_list(raw: Any, fail: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise fail("expected a JSON list or comma-separated text") from None
        else:
            # Commas, newlines or spaces separate items; links never contain spaces.
            return [p for p in text.replace(",", " ").split() if p]
    if isinstance(raw, list | tuple):
        if not all(isinstance(v, str) for v in raw):
            raise fail("expected a list of text")
        return [v.strip() for v in raw if v.strip()]
    raise fail("expected a list or comma-separated text")


# ---- loading and saving ---------------------------------------------------------------


def settings_path(storage_root: str | os.PathLike[str]) -> Path:
    return Path(storage_root) / ".sdpanel" / SETTINGS_FILE


def load_settings(storage_root: str | os.PathLike[str] | None = None,
                  params: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None,
                  *, strict_params: bool = False) -> Settings:
    """Resolve the settings: defaults < settings.json < ``SDPANEL_<FIELD>`` environment
    variables < ``params`` (a notebook's parameters or a panel's values).

    ``storage_root`` None: the ``storage`` parameter when given, else the platform's
    storage root (which honours ``SDPANEL_STORAGE``). A broken settings.json is reported
    and skipped (the user loses nothing worse than defaults); a bad environment or
    parameter value raises :class:`SettingsError`."""
    environ = os.environ if env is None else env
    if storage_root is None:
        storage_root = str((params or {}).get("storage") or "").strip() or None
    if storage_root is None:
        from sdpanel.platforms import detect_platform  # late: platforms is the heavier import

        storage_root = detect_platform(environ).storage_root
    settings = Settings()
    if storage_root:
        path = settings_path(storage_root)
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("top level is not an object")
                settings = settings.replace(data, source=str(path), strict=False)
            except (ValueError, OSError) as exc:
                log.warning("Ignoring %s: %s. Fix or delete the file to silence this.",
                            path, redact(str(exc)))
    from_env = {name: environ[ENV_PREFIX + name.upper()] for name in Settings.field_names()
                if ENV_PREFIX + name.upper() in environ}
    if from_env:
        settings = settings.replace(from_env, source="environment (SDPANEL_*)")
    if params:
        settings = settings.replace(params, source="parameters", strict=strict_params)
    return settings


def save_settings(settings: Settings, storage_root: str | os.PathLike[str]) -> Path:
    """Write ``<storage>/.sdpanel/settings.json`` atomically: a temp file in the same
    folder, flushed to disk, then renamed over the old one — a crash leaves either the old
    file or the new one, never half of one. Secret-looking values are masked."""
    path = settings_path(storage_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings.to_public_dict(), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
