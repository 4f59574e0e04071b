"""Regenerate the README's Reliability and Performance figures from real runs.

    python scripts/figures.py              # make e2e, then make bench, then write both README blocks
    python scripts/figures.py --no-bench   # only the end-to-end suites (Reliability)
    python scripts/figures.py --render     # no runs: re-render README from e2e/results.json
    python scripts/figures.py --screenshot # only the Vapi Sync page's screenshot (docs/screenshots/)

The end-to-end suites (e2e/) record their figures in e2e/results.json; this script renders
them between <!-- RELIABILITY:START --> and <!-- RELIABILITY:END -->. bench/run.py writes the
Performance block (<!-- BENCH:START --> ... <!-- BENCH:END -->) itself. Nothing is written
when the suites fail, unless --force (a failing run's figures are not evidence).

The README's picture of the Vapi Sync page is taken by the browser test, which saves it under
build/screenshots/ (tests never write tracked files); this script runs that test and copies the
picture to docs/screenshots/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "e2e" / "results.json"
README = ROOT / "README.md"
START, END = "<!-- RELIABILITY:START -->", "<!-- RELIABILITY:END -->"
SCREENSHOT_TEST = "vapisync/tests/test_browser.py::test_full_synchronization_from_the_vapi_sync_page"
SCREENSHOT_NAME = "vapi-sync-page.png"
BUILD_SCREENSHOTS = ROOT / "build" / "screenshots"
README_SCREENSHOTS = ROOT / "docs" / "screenshots"


def refresh_screenshot() -> int:
    """Run the browser test that takes the Vapi Sync page's picture, then copy it where the README shows it."""
    env = {**os.environ, "SCREENSHOT_DIR": str(BUILD_SCREENSHOTS)}
    cmd = [sys.executable, "-m", "pytest", SCREENSHOT_TEST, "-p", "no:cacheprovider", "-q"]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=600).returncode
    if rc:
        print(f"the browser test failed (exit {rc}); {README_SCREENSHOTS / SCREENSHOT_NAME} not changed", file=sys.stderr)
        return rc
    README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUILD_SCREENSHOTS / SCREENSHOT_NAME, README_SCREENSHOTS / SCREENSHOT_NAME)
    print(f"{(README_SCREENSHOTS / SCREENSHOT_NAME).relative_to(ROOT)}: refreshed.")
    return 0


def run(cmd: list[str], timeout: float) -> int:
    print("$", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout:.0f}s", file=sys.stderr)
        return 124


def _n(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(data: dict, *, since: float | None = None) -> str:
    sections = data.get("sections", {})
    machine = data.get("machine", {})
    stale = []

    def get(name: str) -> dict:
        section = sections.get(name)
        if section is None:
            stale.append(name)
            return {}
        if since is not None:
            recorded = datetime.strptime(section["recorded_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            if recorded < since - 1:
                stale.append(name)
        return section

    def runs(section: dict) -> str:
        statuses = section.get("run_statuses")
        if statuses:
            return f"{len(statuses)} runs ({', '.join(statuses)})"
        return f"{section.get('runs_after', '?')} run(s) after"

    rows = []
    f = get("fault_rate_limit")
    if f:
        rows.append((f"Vapi answers {f['error_rate']:.0%} 5xx, {f['latency_ms']} ms latency, {f['rate_limit_rps']} rps "
                     f"rate limit (429); {f['lost_responses_after_create']} creates lose their answer after the write",
                     f"{_n(f['assistants'])} assistants ({_n(f['imported'])} imported, {_n(f['created_in_vapi'])} created in Vapi, "
                     f"{_n(f['edited'])} edited), {_n(f['phone_numbers'])} numbers ({_n(f['numbers_reassigned'])} reassigned)",
                     f"full syncs repeated until one succeeded: {runs(f)}, {_n(f['seconds_total'])} s, "
                     f"{_n(f['vapi_requests'])} requests to Vapi", f["duplicates"], f["lost"]))
    f = get("fault_vapi_down")
    if f:
        rows.append((f"Vapi down ({_n(f['outage_seconds'])} s) during a burst of {f['edits_during_outage']} edits and creates "
                     "through the API", f"{f['agents']} agents",
                     f"no write got through while down; caught up {_n(f['seconds_to_catch_up'])} s after Vapi came back, "
                     f"with no manual sync: {f['creates_after_recovery']} creates, {f['updates_after_recovery']} updates",
                     f["duplicates"], f["lost"]))
    f = get("fault_worker_killed")
    if f:
        rows.append(("Celery worker SIGKILLed mid-run (after "
                     f"{_n(f['created_before_kill'])} creates), then restarted", f"{_n(f['agents'])} agents",
                     f"the next full sync got the lock once the lease lapsed (VAPI_SYNC_LOCK_TTL={f.get('lock_ttl_seconds', '?')} s) "
                     f"and succeeded {_n(f['seconds_until_recovered'])} s after the kill; the interrupted run "
                     + ("was still" if f["interrupted_run_status"] in ("queued", "running") else "ended")
                     + f" `{f['interrupted_run_status']}`", f["duplicates"], f["lost"]))
    f = get("fault_db_dropped")
    if f:
        rows.append((f"All {f['connections_terminated']} database connections terminated mid-run "
                     "(pg_terminate_backend)", f"{_n(f['agents'])} agents",
                     f"interrupted run ended `{f['interrupted_run_status']}`; finished by the next full sync, "
                     f"{_n(f['seconds_until_recovered'])} s after the drop", f["duplicates"], f["lost"]))
    f = get("fault_concurrent_syncs")
    if f:
        rows.append(("Two full syncs requested at the same instant", "300 agents, 50 numbers",
                     f"answers {' and '.join(map(str, f['answers']))}; one run", f["duplicates"], 0))
    f = get("fault_webhook_replay")
    if f:
        rows.append(("The same Vapi webhook delivered 3 times concurrently", "1 assistant",
                     f"{f['events_stored']} event stored, {f['duplicates_counted']} duplicates counted, "
                     f"{f['refresh_runs']} refresh (re-read from Vapi)", 0, 0))

    lines = []
    stack = sections.get("stack", {})
    date = max((s.get("recorded_at", "") for s in sections.values()), default="")
    lines.append(f"Measured by `make e2e` on this project's CI machine ({machine.get('cpus', '?')} CPUs, Python "
                 f"{machine.get('python', '?')}), {date[:10]}; the whole suite took {_n(stack.get('session_seconds', 0))} s. "
                 "Regenerate with `make figures`.")
    lines.append("")
    lines.append("| Fault | Data | Outcome | Duplicates | Lost |")
    lines.append("|---|---|---|---:|---:|")
    for fault, items, outcome, dup, lost in rows:
        lines.append(f"| {fault} | {items} | {outcome} | {dup} | {lost} |")
    faults_survived = len(rows)
    total_dup = sum(r[3] for r in rows)
    total_lost = sum(r[4] for r in rows)
    lines.append("")
    lines.append(f"**{faults_survived} faults survived, {total_dup} duplicates and {total_lost} lost changes found.**")
    lines.append("")
    f = get("load")
    if f:
        lines.append(
            f"- **Load:** {f['clients']} concurrent API clients creating and editing agents for {_n(f['seconds'])} s while "
            f"a full sync ran (creating {_n(f.get('bulk_agents_created_by_full_sync', 0))} assistants in Vapi; "
            f"{f.get('full_syncs_during_load', '?')} full sync(s) overlapped the window, further requests every 3 s got 409): "
            f"{_n(f['requests'])} requests ({_n(f['requests_per_second'])} req/s), "
            f"latency p50 {_n(f['latency_ms_p50'])} ms, **p95 {_n(f['latency_ms_p95'])} ms**, p99 {_n(f['latency_ms_p99'])} ms; "
            f"{f['server_errors']} server errors. {_n(f['agents_created'])} agents created and {_n(f['agents_edited'])} edited: "
            f"all {_n(f['agents_total'])} reached Vapi exactly once with their final values, "
            f"{_n(f['seconds_until_vapi_matched'])} s after the load stopped, by the automatic sync alone "
            f"({f['duplicates']} duplicates, {f['lost']} lost).")
    f = get("fuzz")
    if f:
        lines.append(
            f"- **Fuzzing:** schemathesis generated {_n(f['requests'])} valid and invalid requests over all "
            f"{f['operations']} operations of `/api/schema/` (staff token): {f['failures']} server errors or non-JSON 4xx, "
            f"{f['runs_crashed']} crashed sync runs.")
    hand = [get(n) for n in ("bad_input_huge", "bad_input_content_types", "bad_input_unicode", "bad_input_phone_numbers",
                              "bad_input_ids", "bad_input_sql_html")]
    if all(hand):
        lines.append(
            "- **Bad input by hand:** bodies up to 20 MB and JSON nested 100,000 deep, "
            f"{hand[1]['cases']} wrong content types, {hand[2]['round_tripped']} unicode/control-character names and "
            f"prompts (round-tripped to Vapi character for character; {hand[2]['refused']} invalid ones refused), "
            f"{hand[3]['formats'] + hand[3]['types']} odd phone numbers, {_n(hand[4]['requests'])} requests with ids of "
            f"other types, SQL and HTML stored as text and escaped on {hand[5]['admin_pages_checked']} admin pages: "
            "no 5xx, every 4xx in JSON.")
    api, adm, sec, pins = get("security_api_matrix"), get("security_admin_matrix"), get("secrets"), get("pins")
    if api and adm and sec:
        lines.append(
            f"- **Security:** permission matrix of {len(('anonymous', 'plain', 'run_sync', 'staff', 'staff+run_sync', 'superuser'))} "
            f"roles over {api['operations']} API operations and {adm['urls']} admin URLs ({_n(api['requests'] + adm['requests'])} "
            f"requests, all as specified); the API key and webhook secret found {sec.get('leaks_found', 0)} times in "
            f"{_n(sec.get('responses_scanned', 0))} responses, {_n(sec.get('log_bytes_scanned', 0))} bytes of gunicorn, worker "
            f"and beat logs and {_n(sec.get('databases_scanned', 0))} test databases (run history and stored payloads); "
            "webhook secret compared with `hmac.compare_digest`; `check --deploy` clean"
            + (f"; {pins['pinned']} requirements pinned." if pins else "."))
    tests = get("tests").get("outcomes", {})
    if tests:
        counts = {}
        for outcome in tests.values():
            counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
        lines.append("")
        lines.append(f"{len(tests)} end-to-end tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ".")
        for name, outcome in tests.items():
            if outcome["outcome"] == "xfailed":
                lines.append(f"- xfailed `{name}`: {outcome['reason']}")
            elif outcome["outcome"] != "passed":
                lines.append(f"- {outcome['outcome']} `{name}`")
    if stale:
        lines.append("")
        lines.append(f"_Not refreshed by the last run: {', '.join(sorted(set(stale)))}._")
    return "\n".join(lines)


def write_readme(block: str) -> None:
    text = README.read_text()
    new = f"{START}\n{block}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: new, text, flags=re.S)
    else:
        raise SystemExit(f"README.md has no {START} ... {END} markers under '## Reliability'.")
    README.write_text(text)
    print("README.md: Reliability figures updated.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render README from e2e/results.json")
    parser.add_argument("--no-bench", action="store_true", help="skip bench/run.py")
    parser.add_argument("--force", action="store_true", help="write figures even when a suite failed")
    parser.add_argument("--screenshot", action="store_true", help="only refresh the README's screenshot")
    args = parser.parse_args()

    if args.screenshot:
        return refresh_screenshot()

    since = None
    rc = 0
    if not args.render:
        since = time.time()
        rc = run([sys.executable, "-m", "pytest", "e2e", "-p", "no:cacheprovider"], timeout=1800)
        if not args.no_bench:
            bench_rc = run([sys.executable, "bench/run.py"], timeout=3600)
            rc = rc or bench_rc
    if rc and not args.force:
        print(f"a run failed (exit {rc}); README not changed (use --force to write anyway)", file=sys.stderr)
        return rc
    data = json.loads(RESULTS.read_text())
    write_readme(render(data, since=since))
    if not args.render:
        rc = refresh_screenshot() or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
