""".env.demo (written by `make demo`): read by manage.py only to fill what the environment and .env
leave unset, and not at all once VAPI_API_KEY is set there (a real key never meets the emulator's URL)."""

from .helpers import load_settings

DEMO = "DEBUG=true\nVAPI_API_KEY=demo-key\nVAPI_BASE_URL=http://127.0.0.1:8765\nDATABASE_URL=sqlite:////tmp/demo.sqlite3\n"
NAMES = ("DEBUG", "VAPI_API_KEY", "VAPI_BASE_URL", "TIME_ZONE")


def files(tmp_path, dotenv: str):
    (tmp_path / ".env").write_text(dotenv)
    (tmp_path / ".env.demo").write_text(DEMO)
    return {"ENV_FILE": str(tmp_path / ".env"), "DEMO_ENV_FILE": str(tmp_path / ".env.demo")}


def test_without_a_key_elsewhere_the_demo_settings_fill_the_gaps(tmp_path):
    got = load_settings(*NAMES, **files(tmp_path, "TIME_ZONE=Europe/Paris\n"))
    assert got == {"DEBUG": True, "VAPI_API_KEY": "demo-key", "VAPI_BASE_URL": "http://127.0.0.1:8765",
                   "TIME_ZONE": "Europe/Paris"}


def test_a_key_in_dotenv_turns_the_demo_settings_off(tmp_path):
    got = load_settings(*NAMES, SECRET_KEY="s" * 50, **files(tmp_path, "VAPI_API_KEY=real-key\n"))
    assert got["VAPI_API_KEY"] == "real-key" and got["VAPI_BASE_URL"] == "https://api.vapi.ai"
    assert got["DEBUG"] is False


def test_a_key_in_the_environment_turns_the_demo_settings_off(tmp_path):
    got = load_settings(*NAMES, SECRET_KEY="s" * 50, VAPI_API_KEY="real-key", **files(tmp_path, ""))
    assert (got["VAPI_API_KEY"], got["VAPI_BASE_URL"], got["DEBUG"]) == ("real-key", "https://api.vapi.ai", False)


def test_env_file_empty_reads_no_file_at_all(tmp_path):
    env = files(tmp_path, "")
    got = load_settings(*NAMES, SECRET_KEY="s" * 50, ENV_FILE="", DEMO_ENV_FILE=env["DEMO_ENV_FILE"])
    assert got["VAPI_API_KEY"] == "" and got["DEBUG"] is False
