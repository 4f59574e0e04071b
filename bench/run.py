"""Benchmarks of the sync engine against the Vapi emulator over real HTTP.

    make bench            # 10,000 assistants + 5,000 numbers (default)
    python bench/run.py --assistants 2000 --phones 1000 --no-readme

Reports, for import, a no-op full sync and an export of 1,000 local changes: wall time,
requests to Vapi, SQL queries; next to a floor measured in the same run (raw page
fetches + JSON parsing + one bulk insert of the same rows), so the ratio says how much
the engine adds on top of the unavoidable work. Results go to bench/results.json and,
unless --no-readme, into README.md between the BENCH markers.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_emulator(port: int, assistants: int, phones: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "emulator_server.py"), "--port", str(port),
         "--assistants", str(assistants), "--phones", str(phones)],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(label, fn, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.stats.reset()
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    stats = client.stats.snapshot()
    row = {"step": label, "seconds": round(seconds, 2), "requests": stats.get("requests", 0), "queries": len(queries)}
    print(f"  {label:<34} {row['seconds']:>7.2f} s  {row['requests']:>6} requests  {row['queries']:>6} queries", flush=True)
    return row, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--assistants", type=int, default=10000)
    parser.add_argument("--phones", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vapisync-bench-"))
    port = free_port()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="globalvoice.settings",
        SECRET_KEY="bench-only-secret",
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"),
        VAPI_API_KEY="bench-key",
        VAPI_BASE_URL=f"http://127.0.0.1:{port}",
        VAPI_RATE_LIMIT="0",
        CELERY_BROKER_URL="",
        LOG_LEVEL="WARNING",
    )
    print(f"Seeding the emulator with {args.assistants} assistants and {args.phones} phone numbers…", flush=True)
    emulator = start_emulator(port, args.assistants, args.phones)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        rows = run_benchmarks(args)
    finally:
        emulator.kill()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "database": os.environ["DATABASE_URL"].split(":", 1)[0],
        "assistants": args.assistants,
        "phone_numbers": args.phones,
        "changes": args.changes,
        "rows": rows,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    table = render(report)
    print("\n" + table)
    if not args.no_readme:
        update_readme(table)


def run_benchmarks(args) -> list[dict]:
    import requests
    from django.db import connection

    from agents.models import Agent
    from vapisync.models import Direction
    from vapisync.services.clients import sync_client
    from vapisync.services.runs import sync_run_start

    client = sync_client()
    rows = []

    # Floor: the work no sync can avoid — fetch and parse every page, insert the rows once.
    def floor():
        session = requests.Session()
        session.headers["Authorization"] = "Bearer bench-key"
        docs = []
        for path in ("/assistant", "/phone-number"):
            cursor = None
            seen = set()
            while True:
                params = {"limit": 1000}
                if cursor:
                    params["createdAtLe"] = cursor
                page = session.get(os.environ["VAPI_BASE_URL"] + path, params=params, timeout=30).json()
                page = page["results"] if isinstance(page, dict) else page
                fresh = [d for d in page if d["id"] not in seen]
                seen.update(d["id"] for d in fresh)
                docs.extend(fresh)
                client.stats.add(requests=1)
                if len(page) < 1000 or not fresh:
                    break
                cursor = page[-1]["createdAt"]
        agents = [Agent(name=d.get("name", "")[:40], system_prompt="x") for d in docs if "model" in d]
        Agent.objects.bulk_create(agents, batch_size=500)
        Agent.objects.all().delete()
        return len(docs)

    row, _ = measure("floor (fetch + parse + bulk insert)", floor, client)
    rows.append(row)
    for label, direction in (("import (empty database)", Direction.IMPORT), ("no-op full sync", Direction.FULL)):
        row, run = measure(label, lambda d=direction: sync_run_start(direction=d, trigger="cli", client=client), client)
        row["status"], row["counts"] = run.status, run.counts
        rows.append(row)

    ids = list(Agent.objects.order_by("pk").values_list("pk", flat=True)[: args.changes])
    Agent.objects.filter(pk__in=ids).update(system_prompt="Changed locally for the benchmark.")
    row, run = measure(
        f"export of {len(ids)} local changes",
        lambda: sync_run_start(direction=Direction.EXPORT, trigger="cli", client=client), client,
    )
    row["status"], row["counts"] = run.status, run.counts
    rows.append(row)
    connection.close()
    return rows


def render(report: dict) -> str:
    floor = report["rows"][0]["seconds"] or 1e-9
    lines = [
        f"{report['assistants']:,} assistants and {report['phone_numbers']:,} phone numbers in the emulator over "
        f"loopback HTTP; {report['database']} database; {report['machine']}.",
        "",
        "| step | time | × floor | requests to Vapi | SQL queries |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['step']} | {row['seconds']:.2f} s | {row['seconds'] / floor:.1f} | {row['requests']:,} | {row['queries']:,} |"
        )
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = f"<!-- BENCH:START -->\n{table}\n<!-- BENCH:END -->"
    if "<!-- BENCH:START -->" in text:
        text = re.sub(r"<!-- BENCH:START -->.*?<!-- BENCH:END -->", block, text, flags=re.S)
        readme.write_text(text)
        print("README.md updated.")
    else:
        print("README.md has no BENCH markers; figures not written there.")


if __name__ == "__main__":
    main()
