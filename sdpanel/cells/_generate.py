"""The Generate cell: images from the running WebUI (or, with none, the built-in engine)
through sdpanel's job queue. (Its
notebook builder is not in SDPanel.ipynb: the notebook is capped at five cells; a cell that
calls ``sdpanel.cells.generate(PROMPT, ...)`` is all it takes.)

Interactive, the cell returns at once with the Panel on its Generate tab (prompt, img2img,
inpaint with a mask painter, queue, gallery); a prompt given in the cell is queued there
right away. Headless, a prompt is generated and the cell blocks until the images are saved,
then prints where they are and with which seed; with no prompt it says how to ask for one.
A failure ends the cell with one sentence naming the cause and the fix (no traceback).
"""

from __future__ import annotations

from typing import Any

from ._settings_cell import current_settings, is_headless

__all__ = ["GenerateCellError", "generate"]


class GenerateCellError(RuntimeError):
    """No image was made. IPython shows only the message (no traceback)."""

    def _render_traceback_(self) -> list[str]:
        return [f"GenerateCellError: {self}"]


def parse_options(text: str) -> dict[str, Any]:
    """``steps=20 width=768 negative_prompt="blurry hands"`` → job fields (numbers as
    numbers); validation then names any bad field."""
    import json
    import shlex

    fields: dict[str, Any] = {}
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise GenerateCellError(f"GENERATE_OPTIONS cannot be read ({exc}): write name=value pairs "
                                "separated by spaces, quoting values with spaces.") from None
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise GenerateCellError(f"GENERATE_OPTIONS: {word!r} is not name=value (e.g. steps=20).")
        try:
            fields[name] = json.loads(value) if value[:1] in "-0123456789" else value
        except ValueError:
            fields[name] = value
    return fields


def _job_fields(prompt: str, params: dict[str, Any], checkpoints: list[str]) -> dict[str, Any]:
    """The cell's values as a job; an empty checkpoint means the store's first one."""
    data = {"prompt": prompt, **{k: v for k, v in params.items() if v not in (None, "")}}
    if not data.get("checkpoint") and checkpoints:
        data["checkpoint"] = checkpoints[0]
    return data


def _show_panel(prompt: str, params: dict[str, Any]) -> None:
    from IPython.display import display

    from sdpanel.generate._validate import list_models
    from sdpanel.panels import Panel
    from sdpanel.panels._generate_tab import controller
    from sdpanel.panels._services import storage_root

    panel = Panel()
    panel.active_tab = "generate"  # the cell's purpose; the browser owns the choice from here on
    if prompt.strip():
        # Queued like a click on Generate: progress, errors and the image show on the tab.
        controller(panel).submit(_job_fields(prompt, params, list_models(storage_root(), "checkpoints")))
    display(panel)


def generate(prompt: str = "", **params: Any) -> Any:
    """The Generate cell. ``params`` are job fields (negative_prompt, checkpoint, steps, cfg, seed,
    width, height, ...). Interactive: show the Panel on the Generate tab (queueing
    ``prompt`` if given) and return None. Headless: generate ``prompt``, print a summary and
    return the :class:`~sdpanel.generate.GenerateResult` (None without a prompt)."""
    current_settings()  # a broken settings file fails here, with its own clear message
    if not is_headless():
        _show_panel(prompt, params)
        return None
    if not prompt.strip():
        print("Generate: no PROMPT, so nothing is generated here. Type one in this cell (or use "
              "`sdpanel generate \"a prompt\"`, the REST API or the Panel's Generate tab).")
        return None
    return _generate_headless(prompt, params)


def _generate_headless(prompt: str, params: dict[str, Any]) -> Any:
    import sdpanel.generate as gen
    from sdpanel.generate._validate import list_models
    from sdpanel.panels._services import storage_root
    from sdpanel.settings import redact

    root = storage_root()
    data = _job_fields(prompt, params, list_models(root, "checkpoints"))
    print(f"Generate: {data.get('mode', 'txt2img')} of {prompt[:80]!r} …", flush=True)
    last = [-1.0]

    def progress(event: Any) -> None:
        # A line per quarter (and the last step): a readable log in a saved notebook.
        if event.kind == "progress" and (event.data.get("fraction", 0) - last[0] >= 0.25
                                         or event.data.get("step") == event.data.get("steps")):
            last[0] = event.data["fraction"]
            print(f"  step {event.data['step']} of {event.data['steps']}", flush=True)

    try:
        result = gen.generate(storage=root, on_event=progress, **data)
    except gen.ValidationError as exc:
        fields = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
        raise GenerateCellError(redact(f"The job was refused: {fields}. Fix it in this cell and run it again.")) from None
    except gen.NoBackendError:
        raise GenerateCellError("No WebUI is running: launch one with the Launch cell (LAUNCH = True, "
                                "KEEP_ALIVE off for a headless run), or install the built-in engine "
                                "(pip install 'sdpanel[engine]'), and run this cell again.") from None
    except (gen.GenerationFailed, gen.QueueFullError) as exc:
        raise GenerateCellError(redact(f"{exc}; fix the cause and run this cell again.")) from None
    print(f"Generate: done, seed {result.seed}, {len(result.images)} image(s):")
    for path, seed in zip(result.images, result.seeds, strict=True):
        print(f"  {path}  (seed {seed})")
    return result
