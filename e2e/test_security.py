"""Security of the running stack: who may do what, secrets that never leave, deploy settings, pins.

Roles: anonymous, plain (an account, no permissions), runner (vapisync.run_sync only),
staff (is_staff, no permissions), staffrunner (is_staff + run_sync), admin (superuser).
"""

from __future__ import annotations

import ast
import re
import secrets
import subprocess
from importlib import metadata

import requests

from e2e import results
from e2e.checks import sync_until_succeeded
from e2e.stack import PYTHON, ROOT

ROLES = (None, "plain", "runner", "staff", "staffrunner", "admin")
ALLOWED = "allowed"  # any answer but 401/403 (and never a 5xx)


def _label(role):
    return role or "anonymous"


# --- API permission matrix --------------------------------------------------------------------


def _expected_api(role, method: str, path: str):
    """The policy of issues 2 and 6, written out."""
    if role is None:
        return {401}
    if path.startswith("/api/vapi-sync/"):
        # One rule (vapisync/permissions.py): vapisync.run_sync (or view_syncrun for reads); staff status alone is not enough.
        return {403} if role in ("plain", "staff") else ALLOWED
    # /api/agents/, /api/phone-numbers/: any account reads; writes need the model permissions.
    if method == "GET":
        return ALLOWED
    return ALLOWED if role == "admin" else {403}


def _setup_objects(s) -> dict:
    api = s.session("admin")
    s.emu("/__seed", {"assistants": 2, "phones": 2, "prefix": "Perm"})
    sync_until_succeeded(s, max_runs=3, timeout=120)
    dry = api.post("/api/vapi-sync/full", json={"dry_run": True})
    assert dry.status_code == 200, dry.text[:300]
    return {
        "agent": s.scalar("select min(id) from agents_agent"),
        "phone": s.scalar("select min(id) from phonenumbers_app_phonenumber"),
        "run": s.scalar("select max(id) from vapisync_syncrun where dry_run = false"),
        "dry_run": dry.json()["id"],
    }


def _api_request(s, op_path: str, method: str, role, objs: dict, n: int):
    """One concrete request for the operation: existing ids, a minimal valid body, throwaway objects to delete."""
    admin = s.session("admin")
    path = op_path
    body = None
    if "{id}" in path:
        if path.startswith("/api/agents/"):
            target = objs["agent"]
            if method == "DELETE":
                target = admin.post("/api/agents/", json={"name": f"Victim {n}"}).json()["id"]
        elif path.startswith("/api/phone-numbers/"):
            target = objs["phone"]
            if method == "DELETE":
                target = admin.post("/api/phone-numbers/", json={"sip_uri": f"sip:victim{n}@example.com",
                                                                  "provider": "byo-phone-number"}).json()["id"]
        elif path.endswith("/rollback"):
            target = objs["dry_run"]  # cannot be rolled back: an allowed caller gets a 400, nothing changes
        else:
            target = objs["run"]
        path = path.replace("{id}", str(target))
    if method in ("POST", "PUT", "PATCH"):
        if path.startswith("/api/agents/"):
            body = {"name": f"Perm {n}"} if method != "PATCH" else {"first_message": f"Perm {n}"}
        elif path.startswith("/api/phone-numbers/"):
            body = {"sip_uri": f"sip:perm{n}@example.com", "provider": "byo-phone-number"} if method != "PATCH" else {"name": f"P{n}"}
        elif path.endswith("/assistants/delete-in-vapi"):
            body = {"vapi_ids": ["no-such-assistant"]}
        elif path.endswith("/conflicts/resolve"):
            body = {"resource": "agents", "id": objs["agent"], "keep": "vapi"}
        elif path.endswith("/rollback"):
            body = {}
        else:
            body = {"dry_run": True}
    session = s.session(role) if role else s.session(None)
    return session.request(method, path, json=body), path


def test_api_permission_matrix(fresh):
    s = fresh
    objs = _setup_objects(s)
    schema = s.session("admin").get("/api/schema/?format=json")
    assert schema.status_code == 200
    operations = [(path, method.upper()) for path, item in schema.json()["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")]
    assert len(operations) >= 20
    mismatches, cells, n = [], 0, 0
    for path, method in operations:
        if path.endswith("/webhook"):
            continue
        for role in ROLES:
            n += 1
            resp, concrete = _api_request(s, path, method, role, objs, n)
            cells += 1
            expected = _expected_api(role, method, path)
            ok = (resp.status_code not in (401, 403) and resp.status_code < 500) if expected == ALLOWED else resp.status_code in expected
            if not ok:
                mismatches.append(f"{_label(role):>11} {method:6} {concrete}: {resp.status_code} (expected {expected}) {resp.text[:120]}")
            if resp.status_code == 401:
                assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer"), (concrete, resp.headers)
    # A wrong or malformed token is a 401, never a 500; a session without CSRF cannot write.
    for header in ("Bearer " + "0" * 40, "Bearer", "Token " + s.users["admin"].token, "Basic YWRtaW46YWRtaW4=",
                   "Bearer " + s.users["admin"].token + "x", "Bearer \u00e9\u00e9"):
        resp = requests.get(f"{s.base_url}/api/agents/", headers={"Authorization": header.encode("utf-8")}, timeout=30)
        s.scan_response(resp)
        cells += 1
        if resp.status_code != 401:
            mismatches.append(f"Authorization {header[:20]!r}: {resp.status_code}")
    browser = s.admin_login("admin")
    resp = browser.post("/api/vapi-sync/full", json={"dry_run": True})
    cells += 1
    if resp.status_code != 403:
        mismatches.append(f"session POST without CSRF token: {resp.status_code}")
    # The webhook authenticates by its secret only: no token or session opens it.
    for role in ROLES:
        resp = (s.session(role) if role else s.session(None)).post("/api/vapi-sync/webhook", json={"message": {"type": "x"}})
        cells += 1
        if resp.status_code != 401:
            mismatches.append(f"{_label(role)} webhook without secret: {resp.status_code}")
    assert not mismatches, "\n".join(mismatches)
    results.record("security_api_matrix", {"operations": len(operations), "roles": len(ROLES), "requests": cells})


# --- Admin permission matrix --------------------------------------------------------------------


def _admin_urls(s, objs) -> list[str]:
    admin = s.admin_login("admin")
    index = admin.get("/admin/").text
    urls = {"/admin/"}
    changelists = sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index)))
    for changelist in changelists:
        urls.add(changelist)
        page = admin.get(changelist)
        found = re.findall(rf'href="({re.escape(changelist)}(?:\d+/change/|add/))"', page.text)
        urls.update(found[:2])
    urls |= {"/admin/vapisync/sync/", "/admin/vapisync/sync/status.json", "/admin/vapisync/sync/runs/active.json",
             f"/admin/vapisync/sync/runs/{objs['run']}.json", f"/admin/vapisync/syncrun/{objs['run']}/change/",
             f"/admin/agents/agent/{objs['agent']}/change/", f"/admin/phonenumbers_app/phonenumber/{objs['phone']}/change/",
             "/admin/password_change/", "/admin/jsi18n/"}
    return sorted(urls)


def _login(s, role):
    """A browser session of `role`; plain and runner are not staff, so the admin refuses them."""
    if role in (None, "plain", "runner"):
        session = s.browser()
        if role is not None:
            page = session.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            resp = session.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": s.users[role].username,
                                                       "password": s.users[role].password, "next": "/admin/"},
                                headers={"Referer": f"{s.base_url}/admin/login/"}, allow_redirects=False)
            assert resp.status_code == 200, f"{role} (not staff) must not get into the admin: {resp.status_code}"
        return session
    return s.admin_login(role)


def _expected_admin(role, url: str):
    if role in (None, "plain", "runner"):
        return "login"
    if role == "admin":
        return {200}
    staff_anywhere = url in ("/admin/", "/admin/password_change/", "/admin/jsi18n/")
    if staff_anywhere:
        return {200}
    if role == "staffrunner" and url.startswith("/admin/vapisync/sync/"):
        return {200}
    return {403}


def test_admin_permission_matrix(fresh):
    s = fresh
    objs = _setup_objects(s)
    urls = _admin_urls(s, objs)
    assert len(urls) >= 12, urls
    mismatches, cells = [], 0
    for role in ROLES:
        browser = _login(s, role)
        for url in urls:
            resp = browser.get(url, allow_redirects=False)
            cells += 1
            expected = _expected_admin(role, url)
            if expected == "login":
                ok = resp.status_code == 302 and "/admin/login/" in resp.headers.get("Location", "")
            else:
                ok = resp.status_code in expected
            if not ok:
                mismatches.append(f"{_label(role):>11} GET {url}: {resp.status_code} (expected {expected})")
        # The page's buttons: POST with a valid CSRF token.
        page = browser.get("/admin/login/")
        token = browser.cookies.get("csrftoken") or ""
        runs_before = s.scalar("select count(*) from vapisync_syncrun")
        resp = browser.post("/admin/vapisync/sync/run/", data={"operation": "preview", "csrfmiddlewaretoken": token},
                            headers={"Referer": f"{s.base_url}/admin/vapisync/sync/"}, allow_redirects=False)
        cells += 1
        runs_after = s.scalar("select count(*) from vapisync_syncrun")
        if role in ("staffrunner", "admin"):
            ok = resp.status_code == 302 and runs_after == runs_before + 1
        elif role == "staff":
            ok = resp.status_code == 403 and runs_after == runs_before
        else:
            ok = resp.status_code == 302 and "/admin/login/" in resp.headers.get("Location", "") and runs_after == runs_before
        if not ok:
            mismatches.append(f"{_label(role):>11} POST /admin/vapisync/sync/run/: {resp.status_code}, runs {runs_before}->{runs_after}")
        assert page.status_code in (200, 302)
    # Without a CSRF token even the superuser's POST is refused.
    admin = s.admin_login("admin")
    resp = admin.post("/admin/vapisync/sync/run/", data={"operation": "preview"}, allow_redirects=False)
    cells += 1
    if resp.status_code != 403:
        mismatches.append(f"admin POST without CSRF token: {resp.status_code}")
    assert not mismatches, "\n".join(mismatches)
    results.record("security_admin_matrix", {"urls": len(urls), "roles": len(ROLES), "requests": cells})


# --- Secrets ---------------------------------------------------------------------------------------


def test_secrets_never_in_responses_pages_logs_or_history(fresh):
    """The API key and webhook secret, provoked: Vapi refusing the key, Vapi down, wrong webhook secrets.
    Every response is scanned (Stack.scan_response), then the database (the fixture) and every log."""
    s = fresh
    objs = _setup_objects(s)
    admin_api, browser = s.session("admin"), s.admin_login("admin")
    pages = ["/api/vapi-sync/status", "/api/vapi-sync/health", "/api/vapi-sync/runs/", f"/api/vapi-sync/runs/{objs['run']}/",
             f"/api/vapi-sync/runs/{objs['run']}/changes/", "/api/vapi-sync/conflicts", "/api/schema/?format=json", "/api/docs/",
             "/api/agents/", "/api/phone-numbers/", "/healthz"]

    def visit_everything():
        for page in pages:
            admin_api.get(page)
        for url in _admin_urls(s, objs):
            browser.get(url)

    visit_everything()
    # Vapi refuses the key: runs fail with an authentication error, health degrades, the page shows it.
    s.emu_faults(api_key="vk-another-" + secrets.token_hex(8))
    failed = admin_api.post("/api/vapi-sync/full", json={})
    assert failed.status_code in (200, 202)
    agent = admin_api.post("/api/agents/", json={"name": "Pushed with a bad key"})
    assert agent.status_code == 201
    s.wait_idle(timeout=60)
    visit_everything()
    # Vapi down.
    s.emu_faults(down=True)
    admin_api.post("/api/vapi-sync/full", json={"dry_run": True})
    s.wait_idle(timeout=60)
    visit_everything()
    s.emu_faults(down=False, api_key=s.api_key)
    # Wrong webhook secrets, and the right one with a message that quotes it back.
    for given in ("", "x", s.webhook_secret[:-1], s.webhook_secret + "x", s.webhook_secret.upper()):
        resp = requests.post(f"{s.base_url}/api/vapi-sync/webhook", json={"message": {"type": "status-update"}},
                             headers={"X-Vapi-Secret": given}, timeout=30)
        s.scan_response(resp)
    resp = requests.post(f"{s.base_url}/api/vapi-sync/webhook", timeout=30, headers={"X-Vapi-Secret": s.webhook_secret},
                         json={"message": {"type": "status-update", "note": "no secrets in here"}})
    s.scan_response(resp)
    assert resp.status_code == 200, resp.text
    s.wait_idle(timeout=60)

    assert s.responses_scanned > 100
    assert not s.leaks, s.leaks
    log_leaks = s.log_leaks()
    assert not log_leaks, log_leaks
    log_bytes = sum(p.stat().st_size for p in s.logs.glob("*.log"))
    results.record("secrets", {"responses_scanned": s.responses_scanned, "log_bytes_scanned": log_bytes,
                               "leaks_found": len(s.leaks) + len(log_leaks)})


# --- Webhook secret: constant time ----------------------------------------------------------------


def _secret_comparisons(tree: ast.AST) -> tuple[list[int], list[int]]:
    """Line numbers of compare_digest calls, and of ==/!= comparisons that involve a secret."""
    digests, plain = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "compare_digest":
                digests.append(node.lineno)
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            names = {n.attr if isinstance(n, ast.Attribute) else n.id
                     for n in ast.walk(node) if isinstance(n, (ast.Attribute, ast.Name))}
            if any("secret" in name.lower() for name in names):
                plain.append(node.lineno)
    return digests, plain


def test_webhook_secret_compared_in_constant_time(stack):
    s = stack
    source_files = [p for p in (ROOT / "vapisync").rglob("*.py") if "tests" not in p.parts and "emulator" not in p.parts]
    webhook_files = [p for p in source_files if "X-Vapi-Secret" in p.read_text() or "webhook_secret" in p.read_text()]
    assert webhook_files, "no code reads the webhook secret"
    digests_total, offenders = 0, []
    for path in webhook_files:
        digests, plain = _secret_comparisons(ast.parse(path.read_text()))
        digests_total += len(digests)
        offenders += [f"{path.relative_to(ROOT)}:{line}" for line in plain]
    assert digests_total >= 1, f"hmac.compare_digest is not used in {webhook_files}"
    assert not offenders, f"secrets compared with ==/!=/in: {offenders}"

    def post(secret):
        resp = requests.post(f"{s.base_url}/api/vapi-sync/webhook", json={"message": {"type": "e2e-unknown"}},
                             headers={"X-Vapi-Secret": secret} if secret is not None else {}, timeout=30)
        s.scan_response(resp)
        return resp

    right = s.webhook_secret
    same_length = "".join("a" if c != "a" else "b" for c in right)
    for wrong in (None, "", same_length, right[:-1] + ("0" if right[-1] != "0" else "1"), right[:-1], right + "0",
                  right.upper(), "\u00e9" * len(right)):
        resp = post(wrong)
        assert resp.status_code == 401, (wrong, resp.status_code)
        assert resp.json().get("detail") and right not in resp.text
    assert post(right).status_code == 200


# --- Deploy settings and dependencies ---------------------------------------------------------------


def test_check_deploy_clean_with_production_settings(stack):
    env = stack.env(SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="sync.example.com")
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
                 "STATICFILES_BACKEND", "WHITENOISE_USE_FINDERS"):
        env.pop(name, None)  # production defaults
    result = subprocess.run([PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"System check identified no issues", output), output
    for value in stack.secrets.values():
        assert value not in output


REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9_,.-]+\])?==(?P<version>[A-Za-z0-9.+!-]+)"
                         r"(\s*;\s*[^#]+)?(\s+--hash=sha256:[0-9a-f]{64})*\s*$")


def test_dependencies_pinned():
    files = sorted(ROOT.glob("requirements*.txt"))
    assert files
    pins, problems = {}, []
    for path in files:
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-r ") or line.startswith("--requirement "):
                included = ROOT / line.split(None, 1)[1]
                if not included.exists():
                    problems.append(f"{path.name}:{number}: includes missing {included.name}")
                continue
            match = REQUIREMENT.match(line)
            if not match:
                problems.append(f"{path.name}:{number}: not pinned as name==version: {raw!r}")
                continue
            pins[match["name"]] = match["version"]
    assert not problems, problems
    # The environment the suites ran in is the pinned one.
    drift = []
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name}=={version} is not installed")
            continue
        if installed != version:
            drift.append(f"{name}: pinned {version}, installed {installed}")
    assert not drift, drift
    results.record("pins", {"requirements_files": [p.name for p in files], "pinned": len(pins)})
