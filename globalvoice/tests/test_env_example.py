"""Every variable the settings read is documented in .env.example and the README."""

import re

from .helpers import BASE_DIR

READ = re.compile(r"""env\.\w+\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def settings_variables() -> set[str]:
    return set(READ.findall((BASE_DIR / "globalvoice" / "settings.py").read_text()))


def test_settings_read_the_variables_we_expect():
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "VAPI_API_KEY", "STATICFILES_BACKEND"} <= settings_variables()


def test_env_example_documents_every_variable():
    text = (BASE_DIR / ".env.example").read_text()
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = settings_variables() - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_gives_each_variable_a_comment_with_its_default():
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#?[A-Z][A-Z0-9_]*=", line):
            comment = lines[i - 1]
            assert comment.startswith("# ") and "Default:" in comment, f"line {i + 1}: {line!r} needs '# ... Default: ...' above it"


def test_readme_configuration_table_lists_every_variable():
    readme = (BASE_DIR / "README.md").read_text()
    missing = {name for name in settings_variables() if f"`{name}`" not in readme}
    assert not missing, f"README.md's Configuration table lacks {sorted(missing)}"
