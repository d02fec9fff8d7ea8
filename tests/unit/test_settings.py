"""Settings precedence, atomic persistence, secrets resolution and redaction."""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from dataclasses import fields
from pathlib import Path

import pytest

from sdpanel import settings as st
from sdpanel.settings import (
    SECRET_NAMES,
    RedactingFilter,
    Settings,
    SettingsError,
    load_settings,
    redact,
    resolve_secret,
    save_settings,
    set_secret,
)
from sdpanel.settings._secrets import _reset_for_tests, resolve_secret_with_source


@pytest.fixture(autouse=True)
def _clean_secrets(monkeypatch: pytest.MonkeyPatch):
    _reset_for_tests()
    for name in list(os.environ):
        if name.startswith("SDPANEL_"):
            monkeypatch.delenv(name)
    yield
    _reset_for_tests()


def _write_json(root: Path, data: dict) -> Path:
    path = root / ".sdpanel" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- the dataclass ----------------------------------------------------------------------


def test_defaults_match_what_users_expect() -> None:
    s = Settings()
    assert s.webui == "comfyui"
    assert s.download_engine == "auto"
    assert s.max_concurrent_downloads == 3
    assert s.connections_per_file == 16
    assert s.tunnel == "none"
    assert s.civitai_base_url == "https://civitai.com"
    assert s.hf_base_url == "https://huggingface.co"
    assert s.model_presets == [] and s.model_links == []


def test_every_field_has_help_and_param_flag_and_no_secret_fields() -> None:
    for f in fields(Settings):
        assert f.metadata.get("help"), f"{f.name} lacks help text"
        assert isinstance(f.metadata.get("param"), bool), f.name
        assert f.name.upper() not in SECRET_NAMES
        assert "token" not in f.name
    choices = {f.name: f.metadata.get("choices") for f in fields(Settings)}
    assert choices["webui"] == ["comfyui", "forge", "a1111", "reforge", "forge-classic", "forge-neo", "sd-ux",
                                "sdnext"]
    assert choices["tunnel"] == ["none", "cloudflared", "ngrok", "zrok", "localtunnel", "pinggy"]
    assert choices["download_engine"] == ["auto", "aria2", "python"]


# ---- precedence ---------------------------------------------------------------------------


def test_precedence_defaults_file_env_params(tmp_path: Path) -> None:
    assert load_settings(tmp_path, env={}) == Settings()
    _write_json(tmp_path, {"webui": "forge", "tunnel": "ngrok", "connections_per_file": 8,
                           "gpu_index": 1})
    from_file = load_settings(tmp_path, env={})
    assert (from_file.webui, from_file.tunnel, from_file.connections_per_file) == ("forge", "ngrok", 8)

    env = {"SDPANEL_WEBUI": "a1111", "SDPANEL_CONNECTIONS_PER_FILE": "4",
           "SDPANEL_KEEP_ALIVE": "yes", "SDPANEL_MODEL_PRESETS": "sdxl-base, flux-dev"}
    from_env = load_settings(tmp_path, env=env)
    assert from_env.webui == "a1111"
    assert from_env.connections_per_file == 4  # typed: int, not "4"
    assert from_env.keep_alive is True
    assert from_env.model_presets == ["sdxl-base", "flux-dev"]
    assert from_env.tunnel == "ngrok"  # untouched by env: still from the file

    final = load_settings(tmp_path, params={"webui": "sdnext", "gpu_index": 0}, env=env)
    assert final.webui == "sdnext"
    assert final.gpu_index == 0  # a param equal to the default still beats the file
    assert final.connections_per_file == 4
    assert final.tunnel == "ngrok"


def test_environment_is_read_from_os_environ_by_default(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_MAX_CONCURRENT_DOWNLOADS", "7")
    assert load_settings(tmp_path).max_concurrent_downloads == 7


@pytest.mark.parametrize(("params", "needle"), [
    ({"webui": "photoshop"}, "choose one of comfyui"),
    ({"tunnel": "wormhole"}, "choose one of none, cloudflared"),
    ({"max_concurrent_downloads": "lots"}, "whole number"),
    ({"connections_per_file": 0}, "at least 1"),
    ({"nsfw": "maybe"}, "true or false"),
    ({"civitai_base_url": "civitai.com"}, "http:// or https://"),
])
def test_bad_values_raise_naming_setting_and_fix(tmp_path: Path, params: dict, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path, params=params, env={})
    message = str(err.value)
    assert next(iter(params)) in message
    assert needle in message


def test_bad_env_value_names_the_environment(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="environment.*gpu_index|gpu_index.*environment"):
        load_settings(tmp_path, env={"SDPANEL_GPU_INDEX": "first"})


def test_choice_is_case_insensitive_and_lists_accept_json(tmp_path: Path) -> None:
    s = load_settings(tmp_path, params={"webui": "ComfyUI",
                                        "model_links": '["https://a/x", "https://b/y"]'}, env={})
    assert s.webui == "comfyui"
    assert s.model_links == ["https://a/x", "https://b/y"]


def test_unknown_param_is_skipped_unless_strict(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="sdpanel.settings"):
        s = load_settings(tmp_path, params={"colour": "blue"}, env={})
    assert s == Settings()
    assert "colour" in caplog.text
    with pytest.raises(SettingsError, match="Unknown setting 'colour'"):
        load_settings(tmp_path, params={"colour": "blue"}, env={}, strict_params=True)


def test_broken_settings_file_falls_back_to_defaults_with_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / ".sdpanel" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="sdpanel.settings"):
        assert load_settings(tmp_path, env={}) == Settings()
    assert str(path) in caplog.text


def test_token_params_become_secrets_not_settings(tmp_path: Path) -> None:
    s = load_settings(tmp_path, params={"civitai_token": "panel-value-123456", "webui": "forge"},
                      env={})
    assert "panel-value-123456" not in repr(s)
    assert resolve_secret("CIVITAI_TOKEN") == "panel-value-123456"


# ---- saving ---------------------------------------------------------------------------


def test_save_roundtrip_and_leaves_no_temp_files(tmp_path: Path) -> None:
    s = Settings().replace(webui="reforge", model_links=["https://example/a"], nsfw=True)
    path = save_settings(s, tmp_path)
    assert path == tmp_path / ".sdpanel" / "settings.json"
    assert load_settings(tmp_path, env={}) == s
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_crash_during_save_keeps_old_file_intact(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    save_settings(Settings().replace(webui="forge"), tmp_path)
    before = (tmp_path / ".sdpanel" / "settings.json").read_text()

    def crash(*_a, **_k):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_settings(Settings().replace(webui="sdnext"), tmp_path)
    monkeypatch.undo()
    folder = tmp_path / ".sdpanel"
    assert (folder / "settings.json").read_text() == before
    assert json.loads(before)["webui"] == "forge"
    assert sorted(p.name for p in folder.iterdir()) == ["settings.json"]


def test_saved_file_never_contains_secrets(tmp_path: Path, planted_tokens: dict[str, str]) -> None:
    set_secret("NGROK_TOKEN", "ngrok-panel-secret-value-42")
    s = Settings().replace(
        launch_args=f"--api-auth {planted_tokens['CIVITAI_TOKEN']} --key ngrok-panel-secret-value-42",
        model_links=[f"https://civitai.com/api/download/models/1?token={planted_tokens['HF_TOKEN']}",
                     "https://huggingface.co/x?token=abcdef0123"],
        storage="hf_abcdefghijklmnopqrstuvwx",
    )
    path = save_settings(s, tmp_path)
    text = path.read_text()
    for value in (*planted_tokens.values(), "ngrok-panel-secret-value-42", "abcdef0123",
                  "hf_abcdefghijklmnopqrstuvwx"):
        assert value not in text
    assert "***" in text
    assert json.loads(text)["webui"] == "comfyui"  # still valid JSON with the real settings


def test_public_dict_and_describe_mask_secrets(planted_tokens: dict[str, str]) -> None:
    s = Settings().replace(launch_args=f"--token {planted_tokens['HF_TOKEN']}")
    assert planted_tokens["HF_TOKEN"] not in json.dumps(s.to_public_dict())
    text = s.describe()
    assert "webui" in text and "comfyui" in text
    assert "HF_TOKEN" in text and "set (environment)" in text
    for value in planted_tokens.values():
        assert value not in text


# ---- secrets --------------------------------------------------------------------------


@pytest.fixture
def fake_stores(monkeypatch: pytest.MonkeyPatch):
    """Fake google.colab.userdata and kaggle_secrets modules; returns their dicts."""
    colab: dict[str, str] = {}
    kaggle: dict[str, str] = {}

    class SecretNotFoundError(Exception):
        pass

    def colab_get(name: str) -> str:
        if name not in colab:
            raise SecretNotFoundError(name)
        return colab[name]

    userdata = types.ModuleType("google.colab.userdata")
    userdata.get = colab_get  # type: ignore[attr-defined]
    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    google_colab.userdata = userdata  # type: ignore[attr-defined]
    google.colab = google_colab  # type: ignore[attr-defined]

    class UserSecretsClient:
        def get_secret(self, name: str) -> str:
            if name not in kaggle:
                raise RuntimeError("secret not attached")
            return kaggle[name]

    kaggle_mod = types.ModuleType("kaggle_secrets")
    kaggle_mod.UserSecretsClient = UserSecretsClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle_mod)
    return colab, kaggle


def test_resolve_order_panel_env_colab_kaggle(monkeypatch: pytest.MonkeyPatch, fake_stores) -> None:
    colab, kaggle = fake_stores
    kaggle["HF_TOKEN"] = "from-kaggle-1234"
    colab["HF_TOKEN"] = "from-colab-1234"
    monkeypatch.setenv("HF_TOKEN", "from-env-1234")
    set_secret("HF_TOKEN", "from-panel-1234")

    assert resolve_secret_with_source("HF_TOKEN") == ("from-panel-1234", "panel")
    assert resolve_secret("HF_TOKEN", panel_value="explicit-panel-1234") == "explicit-panel-1234"
    set_secret("HF_TOKEN", "")
    assert resolve_secret_with_source("HF_TOKEN") == ("from-env-1234", "environment")
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_secret_with_source("HF_TOKEN") == ("from-colab-1234", "colab")
    _reset_for_tests()  # forget the cached store value
    del colab["HF_TOKEN"]
    assert resolve_secret_with_source("HF_TOKEN") == ("from-kaggle-1234", "kaggle")
    _reset_for_tests()
    del kaggle["HF_TOKEN"]
    assert resolve_secret("HF_TOKEN") is None


def test_runpod_secret_env_name_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVITAI_TOKEN")
    monkeypatch.setenv("RUNPOD_SECRET_CIVITAI_TOKEN", "runpod-secret-value")
    assert resolve_secret("CIVITAI_TOKEN") == "runpod-secret-value"
    assert redact("x runpod-secret-value y") == "x *** y"


def test_store_failures_fall_through(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("kaggle_secrets")  # no UserSecretsClient attribute at all
    monkeypatch.setitem(sys.modules, "kaggle_secrets", broken)
    monkeypatch.delenv("ZROK_TOKEN")
    assert resolve_secret("ZROK_TOKEN") is None


def test_unknown_secret_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="known secrets: CIVITAI_TOKEN"):
        resolve_secret("GITHUB_TOKEN")
    with pytest.raises(ValueError):
        set_secret("PASSWORD", "x")


def test_resolved_store_values_are_registered_for_redaction(monkeypatch, fake_stores) -> None:
    colab, _ = fake_stores
    monkeypatch.delenv("NGROK_TOKEN")
    colab["NGROK_TOKEN"] = "colab-ngrok-value-777"
    assert redact("tunnel colab-ngrok-value-777") == "tunnel colab-ngrok-value-777"
    resolve_secret("NGROK_TOKEN")
    assert redact("tunnel colab-ngrok-value-777") == "tunnel ***"


# ---- redaction ------------------------------------------------------------------------


def test_redact_masks_env_values_and_patterns(planted_tokens: dict[str, str]) -> None:
    line = (f"GET https://civitai.com/api/download/models/5?type=Model&token={planted_tokens['CIVITAI_TOKEN']}"
            f" with Authorization: Bearer {planted_tokens['HF_TOKEN']}")
    masked = redact(line)
    for value in planted_tokens.values():
        assert value not in masked
    assert "type=Model" in masked and "token=***" in masked

    assert redact("https://h/x?token=unknown123&a=1") == "https://h/x?token=***&a=1"
    assert redact("Authorization: Bearer eyJhbGciOi.abc") == "Authorization: Bearer ***"
    assert redact("--rpc-secret=s3cr3tvalue") == "--rpc-secret=***"
    assert redact('{"api_key": "zzz-123"}') == '{"api_key": "***"}'
    assert redact("https://user:pa55word@host/x") == "https://user:***@host/x"
    assert redact("hf_AbCdEfGhIjKlMnOpQrSt leaked") == "*** leaked"
    assert redact("max_tokens=5 sha256=ab12") == "max_tokens=5 sha256=ab12"  # not credentials
    assert redact("") == ""


def test_redact_masks_longest_value_first() -> None:
    st.register_secret("abcdef")
    st.register_secret("abcdefghij")
    assert redact("key abcdefghij!") == "key ***!"


def test_short_values_are_not_masked_everywhere() -> None:
    st.register_secret("ab")
    assert redact("about tabs") == "about tabs"


def test_logging_is_redacted_for_child_loggers(planted_tokens: dict[str, str], caplog) -> None:
    with caplog.at_level(logging.INFO, logger="sdpanel"):
        logging.getLogger("sdpanel.downloads.test").info("fetching with %s", planted_tokens["CIVITAI_TOKEN"])
        try:
            raise RuntimeError(f"bad token {planted_tokens['HF_TOKEN']}")
        except RuntimeError:
            logging.getLogger("sdpanel.x").exception("failed")
    assert "fetching with ***" in caplog.text
    assert "bad token ***" in caplog.text
    for value in planted_tokens.values():
        assert value not in caplog.text


def test_redacting_filter_on_any_handler(planted_tokens: dict[str, str]) -> None:
    record = logging.LogRecord("other", logging.INFO, __file__, 1, "token %s",
                               (planted_tokens["ZROK_TOKEN"],), None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "token ***"


# ---- the session guard itself ---------------------------------------------------------

_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"


def test_planted_token_guard_catches_a_leak(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(_CONFTEST.read_text())
    pytester.makepyfile(test_leaky="""
        import os
        def test_clean():
            print("nothing secret here")
        def test_prints_token():
            print("using", os.environ["HF_TOKEN"])
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 1  # both tests passed, yet the session fails
    result.stdout.fnmatch_lines(["*PLANTED TOKEN LEAKED*",
                                 "*test_leaky.py::test_prints_token*planted HF_TOKEN*"])
    assert "test_clean" not in "\n".join(line for line in result.outlines if "planted" in line)


def test_planted_token_guard_scans_artifacts_and_passes_clean_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(_CONFTEST.read_text())
    pytester.makepyfile(test_clean="""
        import os
        from pathlib import Path
        def test_masked_print():
            print("token=***")
        def test_writes_artifact():
            Path("artifacts").mkdir(exist_ok=True)
            Path("artifacts/ok.txt").write_text("no secrets")
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 0, result.outlines
    pytester.makepyfile(test_artifact="""
        import os
        from pathlib import Path
        def test_writes_token_to_artifact():
            Path("artifacts").mkdir(exist_ok=True)
            Path("artifacts/run.log").write_text("cmd --token " + os.environ["CIVITAI_TOKEN"])
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "test_artifact.py")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*artifact*run.log*planted CIVITAI_TOKEN*"])


def test_schema_drives_notebook_params_and_cli() -> None:
    rows = {r["name"]: r for r in Settings.schema()}
    assert list(rows) == Settings.field_names()
    assert rows["webui"]["type"] == "str" and rows["webui"]["default"] == "comfyui"
    assert rows["webui"]["choices"][0] == "comfyui" and rows["webui"]["param"] is True
    assert rows["max_concurrent_downloads"]["type"] == "int"
    assert rows["keep_alive"]["type"] == "bool"
    assert rows["model_links"]["type"] == "list" and rows["model_links"]["default"] == []
    assert rows["civitai_base_url"]["param"] is False  # tests and mirrors, not a user pick
    assert rows["tunnel"]["env"] == "SDPANEL_TUNNEL"
    json.dumps(list(rows.values()))


def test_default_storage_root_is_the_platforms(tmp_path: Path) -> None:
    env = {"SDPANEL_PLATFORM": "local", "SDPANEL_STORAGE": str(tmp_path)}
    _write_json(tmp_path, {"webui": "a1111"})
    assert load_settings(env=env).webui == "a1111"
    other = tmp_path / "other"
    _write_json(other, {"webui": "sdnext"})
    assert load_settings(params={"storage": str(other)}, env=env).webui == "sdnext"
