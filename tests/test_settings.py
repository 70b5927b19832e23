"""Settings: every kind of bad value stops the start with one clear line, and .env.example is complete."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SETTINGS, Settings, SettingsError, load_settings, setting_names
from lua_runtime.limits import MiB, SandboxLimits

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTEwMDAwMDAwMDAwMDAwMDA0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.database_path == Path("data/warden.db")
    assert settings.vm_strategy == "processpool"
    assert settings.limits == SandboxLimits()
    assert settings.discord_token is None


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "DISCORD_TOKEN": TOKEN,
            "DATABASE_PATH": "/tmp/w.db",
            "LOG_LEVEL": "debug",
            "DEV_GUILD_ID": "1100000000000000001",
            "DISCORD_API_BASE": "http://127.0.0.1:8080/api/v10/",
            "VM_STRATEGY": "thread-per-guild",
            "VM_IDLE_SECONDS": "60",
            "VM_WORKERS": "3",
            "VM_MAX_MEMORY": "32MiB",
            "VM_CPU_MS_PER_EVENT": "250",
            "SCRIPT_MAX_BYTES": "16KiB",
            "KV_MAX_KEYS": "50",
            "VM_DEADLINE_SECONDS": "1.5",
            "VM_DEADLINE_FACTOR": "20",
            "TASK_MAX_PENDING_TIMERS": "10",
            "TASK_MAX_DELAY_SECONDS": "60",
        }
    )
    assert settings.require_token() == TOKEN
    assert settings.log_level == "DEBUG"
    assert settings.dev_guild_id == 1100000000000000001
    assert settings.discord_api_base == "http://127.0.0.1:8080/api/v10"
    assert settings.vm_strategy == "thread-per-guild" and settings.vm_workers == 3
    assert settings.pool_config().idle_seconds == 60.0
    assert settings.limits.max_memory == 32 * MiB
    assert settings.limits.cpu_ms_per_event == 250
    assert settings.limits.max_script_bytes == 16 * 1024
    assert settings.limits.kv_max_keys == 50
    config = settings.pool_config()
    assert (config.worker_deadline_seconds, config.worker_deadline_factor) == (1.5, 20.0)
    assert (settings.limits.max_pending_timers, settings.limits.max_timer_delay_seconds) == (10, 60)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("DISCORD_TOKEN", "not a token", "does not look like a bot token"),
        ("DISCORD_TOKEN", '"' + TOKEN + '"', "does not look like a bot token"),
        ("DEV_GUILD_ID", "my-server", "is not a Discord id"),
        ("LOG_LEVEL", "LOUD", "is not a log level"),
        ("VM_STRATEGY", "fork", "is not a VM strategy"),
        ("VM_WORKERS", "0", "is not a positive whole number"),
        ("VM_WORKERS", "two", "is not a positive whole number"),
        ("VM_MAX_MEMORY", "lots", "is not a size"),
        ("VM_MAX_MEMORY", "16 parsecs", "is not a size"),
        ("VM_MAX_MEMORY", "64KiB", "is too small"),
        ("VM_CPU_MS_PER_EVENT", "-5", "is not a positive whole number"),
        ("DISCORD_API_BASE", "proxy.local", "is not an http(s) URL"),
        ("VM_DEADLINE_SECONDS", "0", "is not a positive number"),
        ("VM_DEADLINE_SECONDS", "soon", "is not a positive number"),
        ("VM_DEADLINE_FACTOR", "inf", "is not a positive number"),
        ("TASK_MAX_DELAY_SECONDS", "1.5", "is not a positive whole number"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(variable, value, problem):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable} {problem}: ")
    assert "\n" not in message and len(message.split(": ", 1)[1]) > 10


def test_missing_token_says_how_to_provide_it():
    with pytest.raises(SettingsError, match=r"^DISCORD_TOKEN is not set: copy \.env\.example to \.env"):
        Settings.from_env({}).require_token()


def test_env_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("VM_WORKERS=7\nLOG_LEVEL=WARNING\n")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    settings = load_settings(env_file)
    assert settings.vm_workers == 7
    assert settings.log_level == "ERROR"


def test_env_example_documents_every_setting():
    example = (ROOT / ".env.example").read_text()
    documented = re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE)
    assert sorted(documented) == sorted(setting_names())
    # Every default written in the example parses and equals the built-in default.
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", example, flags=re.MULTILINE))
    assert Settings.from_env(values) == Settings.from_env({})


def test_every_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for spec in SETTINGS:
        assert f"| `{spec.env}` |" in readme


def test_bad_setting_exits_with_one_line_and_no_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VM_WORKERS": "lots", "DISCORD_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--env-file", str(tmp_path / "missing.env")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: VM_WORKERS is not a positive whole number: give a number of workers, like 100"
    ]
    assert "Traceback" not in proc.stderr


def test_missing_token_exits_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--env-file", str(tmp_path / "missing.env")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: DISCORD_TOKEN is not set: copy .env.example to .env and paste your bot token there"
    ]
