"""The environment every child process gets: an allow-list, never a copy of ours.

A kernel holds tokens (``CIVITAI_TOKEN``, ``HF_TOKEN``, ``NGROK_TOKEN``…) in its
environment; a WebUI, a tunnel tool, aria2c or a pip step must not inherit them (a third-
party extension in a WebUI can read ``/proc/self/environ``). Children get the variables a
program needs to run at all (locale, paths, certificates, network proxies, GPU selection,
package-tool configuration) plus exactly what the caller adds for that child.

``SDPANEL_CHILD_ENV`` (comma-separated names or ``fnmatch`` patterns, e.g.
``COMMANDLINE_ARGS,MY_*``) passes more through for users who configure a WebUI by
environment; a name that looks like a secret is never passed, whatever the pattern says.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping

__all__ = ["child_env"]

_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
    "PWD", "DISPLAY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "all_proxy", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONUNBUFFERED",
    "VIRTUAL_ENV", "CONDA_PREFIX", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "MPLCONFIGDIR",
    "SDPANEL_FS_ROOT", "SDPANEL_DEBUG",
})
# Families of harmless configuration: locale, XDG dirs, GPU runtime, package tools.
_PREFIXES = ("LC_", "XDG_", "CUDA_", "NVIDIA_", "ROCR_", "HIP_", "PIP_", "UV_", "GIT_CONFIG_")
# Whatever an allow-list or a user pattern says, these never reach a child.
_SECRET = re.compile(r"TOKEN|SECRET|PASSW|PASSWD|API_?KEY|AUTH|CREDENTIAL|PRIVATE", re.IGNORECASE)


def _user_patterns(env: Mapping[str, str]) -> list[str]:
    return [p.strip() for p in env.get("SDPANEL_CHILD_ENV", "").split(",") if p.strip()]


def _allowed(name: str, patterns: list[str]) -> bool:
    if _SECRET.search(name):
        return False
    if name in _NAMES or name.startswith(_PREFIXES):
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def child_env(extra: Mapping[str, str] | None = None, *,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``base`` (default: ``os.environ``) plus ``extra``.

    ``extra`` is what this one child needs (a tunnel tool's own token, ``GIT_TERMINAL_PROMPT``…)
    and is taken as given: the caller decided that child must have it."""
    src = os.environ if base is None else base
    patterns = _user_patterns(src)
    env = {k: v for k, v in src.items() if _allowed(k, patterns)}
    env.update(extra or {})
    return env
