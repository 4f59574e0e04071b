"""`manage.py check --deploy` is clean with production settings, and says so when they are weakened."""

import secrets
import subprocess
import sys

from .helpers import BASE_DIR, clean_env


def run_deploy_check(tmp_path, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
    )
    env.update(extra)
    return subprocess.run(
        # --database adds the checks that need a connection (index names, for one).
        [sys.executable, "manage.py", "check", "--deploy", "--database", "default", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_no_issues(tmp_path):
    result = run_deploy_check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNINGS" not in output and "ERRORS" not in output


def test_check_deploy_flags_plain_http_settings(tmp_path):
    """Turning the protections off for local HTTP use is possible, and check --deploy notices."""
    result = run_deploy_check(tmp_path, SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "security.W004" in output  # no HSTS
    assert "security.W008" in output  # no SSL redirect


def test_check_deploy_rejects_a_weak_secret_key(tmp_path):
    result = run_deploy_check(tmp_path, SECRET_KEY="short")
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr
