"""Cell 2, Settings: the papermill ``parameters`` cell. One Colab ``#@param`` line per
user-picked setting (read from the ``Settings`` dataclass metadata) plus empty token
fields, then one call into ``sdpanel.cells.settings``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from nbformat import NotebookNode

from sdpanel.settings import Settings

from ._generator import code_cell

ORDER = 2


def _param_line(field: dataclasses.Field[Any]) -> str:
    name = field.name.upper()
    default = getattr(Settings(), field.name)
    choices = field.metadata.get("choices")
    if isinstance(default, bool):
        return f'{name} = {default}  #@param {{type:"boolean"}}'
    if isinstance(default, int):
        return f'{name} = {default}  #@param {{type:"integer"}}'
    if isinstance(default, list):  # comma-separated in a form field; parsed by Settings
        default = ", ".join(default)
    value = json.dumps(str(default))
    if choices:
        return f"{name} = {value}  #@param {json.dumps(list(choices))}"
    return f'{name} = {value}  #@param {{type:"string"}}'


def source() -> str:
    from sdpanel.cells import param_fields
    from sdpanel.settings import SECRET_NAMES

    lines = ["#@title 2. Settings: WebUI, models, downloads, tunnel, tokens"]
    for field in param_fields():
        lines.append(f"# {field.metadata.get('help', field.name)}")
        lines.append(_param_line(field))
    lines.append("# Tokens: leave empty to use the environment or the platform's secrets")
    lines += [f'{name} = ""  #@param {{type:"string"}}' for name in SECRET_NAMES]
    lines += [
        "",
        "import sdpanel.cells",
        "",
        "# The live namespace, so values papermill injects after this cell still count.",
        "sdpanel.cells.settings(globals())",
    ]
    return "\n".join(lines)


def build() -> NotebookNode:
    return code_cell("cell-settings", source(), tags=["parameters"])
