"""Benchmarks of the sync engine against the Vapi emulator over real HTTP (run on demand, never in CI).

    make bench                     # the full set: SQLite and PostgreSQL, 10,000 and 100,000 assistants,
                                   # exports against 50/s, 10/s and unlimited emulators (takes a while)
    BENCH_QUICK=1 make bench       # a quick subset: SQLite, 2,000 assistants, the 50/s export
    python bench/run.py --help     # every option below as a flag

Options (environment variables, or the flags of the same name):

    BENCH_QUICK=1                  quick subset (the defaults below become 2000 / sqlite / 50 / 300)
    BENCH_SIZES=10000,100000       assistants per scale step; each gets half as many phone numbers
    BENCH_REPEAT=3                 rounds per size, each from an empty database; the fastest is kept
    BENCH_DATABASES=sqlite,postgres
    BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/bench_globalvoice   (created and dropped by the bench)
    BENCH_RATES=50,10,0            the emulator's rate limit (requests/s) for the export step; 0 = none
    BENCH_CHANGES=2000             local changes exported per rate (at most 50 s worth at that rate)
    BENCH_LATENCY_MS=40            the emulator's latency during the export step
    BENCH_FIXED_RATE=20            also export with fixed pacing at this rate (the pre-adaptive default)
    BENCH_README=0                 do not write the figures into README.md
    BENCH_TRACE=/tmp/writes.txt    write each export's write answers (seconds, status, pacing rate) there
    BENCH_PROFILE_DIR=/tmp/prof    profile each step with cProfile into that directory (slows the figures)

For each database and size: a floor (fetch and parse every page at limit 1000, then one executemany
per table of the same local rows: the work no sync can avoid), a write floor (the floor, plus the sync
records and history rows an import writes beside them, inserted the same way), an import into an empty
database and a no-op full sync, each in its own process, so its peak memory (RSS) is its own. Then,
on the first database and size, exports of local changes against the rate-limited emulator, with the
client's default (adaptive) pacing: write rate, share of the limit, share of requests answered 429.
Results go to bench/results.json and, unless BENCH_README=0, into README.md between the BENCH markers.
"""

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICK = {"sizes": "2000", "databases": "sqlite", "rates": "50", "changes": "300", "repeat": "1"}
DEFAULTS = {
    "sizes": "10000,100000",
    "repeat": "3",
    "databases": "sqlite,postgres",
    "pg_url": "postgres://postgres@127.0.0.1:5432/bench_globalvoice",
    "rates": "50,10,0",
    "changes": "2000",
    "latency_ms": "40",
    "fixed_rate": "",
    "readme": "1",
}
SYNC_STEPS = ("floor", "write_floor", "import", "noop")
MAX_EXPORT_SECONDS = 50  # changes per rate are capped so one export takes at most about this long


# --- orchestration (parent process) ---------------------------------------------------------


def options(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    for name in DEFAULTS:
        parser.add_argument(f"--{name.replace('_', '-')}", default=os.environ.get(f"BENCH_{name.upper()}"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK.get(name, default) if args.quick else default)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.databases = [d.strip() for d in str(args.databases).split(",") if d.strip()]
    args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    args.changes = int(args.changes)
    args.repeat = max(1, int(args.repeat))
    args.latency_ms = float(args.latency_ms)
    args.fixed_rate = float(args.fixed_rate) if args.fixed_rate else 0.0
    args.readme = str(args.readme) not in ("0", "false", "no")
    return args


def main():
    args = options()
    if args.child:
        child(args.child, json.loads(args.child_args))
        return
    started = time.time()
    report = {"machine": machine(), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "options": {"sizes": args.sizes, "databases": args.databases, "rates": args.rates,
                          "changes": args.changes, "latency_ms": args.latency_ms},
              "sync": [], "exports": []}
    print(f"Machine: {report['machine']}", flush=True)
    for db_index, database in enumerate(args.databases):
        for size_index, assistants in enumerate(args.sizes):
            phones = assistants // 2
            with Emulator(assistants, phones) as emulator:
                # Each round starts from an empty database; the fastest round of each step is kept
                # (the others measured the machine's other jobs).
                best = {}
                for _ in range(args.repeat):
                    with fresh_database(database, args.pg_url) as database_url:
                        env = {"DATABASE_URL": database_url, "VAPI_BASE_URL": emulator.url}
                        run_child("migrate", {}, env)
                        for step in SYNC_STEPS:
                            row = run_child(step, {}, env)
                            if step not in best or row["seconds"] < best[step]["seconds"]:
                                best[step] = row
                for step in SYNC_STEPS:
                    best[step].update(database=database, assistants=assistants, phone_numbers=phones,
                                      rounds=args.repeat)
                    report["sync"].append(best[step])
            if db_index == 0 and size_index == 0 and args.rates:
                report["exports"] += exports(args, database, assistants, phones)
    report["bench_seconds"] = round(time.time() - started)
    (ROOT / "bench" / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    table = render(report)
    print("\n" + table)
    if args.readme:
        update_readme(table)


def exports(args, database: str, assistants: int, phones: int) -> list[dict]:
    """Export local changes to the rate-limited emulator, once per rate (and pacing)."""
    rows = []
    with fresh_database(database, args.pg_url) as database_url, Emulator(assistants, phones) as emulator:
        env = {"DATABASE_URL": database_url, "VAPI_BASE_URL": emulator.url}
        run_child("migrate", {}, env)
        run_child("import", {}, env)
        scenarios = [(rate, "adaptive") for rate in args.rates]
        if args.fixed_rate:
            scenarios += [(rate, f"fixed {args.fixed_rate:g}/s") for rate in args.rates]
        for rate, pacing in scenarios:
            changes = args.changes if not rate else min(args.changes, int(rate * MAX_EXPORT_SECONDS))
            emulator.faults(rate_limit=rate or None, latency_ms=args.latency_ms)
            child_env = dict(env)
            if pacing != "adaptive":
                child_env.update(VAPI_ADAPTIVE_RATE="false", VAPI_RATE_LIMIT=str(args.fixed_rate))
            row = run_child("export", {"changes": changes, "tag": f"{rate:g}-{pacing}"}, child_env)
            row.update(database=database, limit=rate, latency_ms=args.latency_ms, pacing=pacing)
            rows.append(row)
            emulator.faults(rate_limit=None, latency_ms=0)
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


class fresh_database:
    """An empty database for one size: a new SQLite file, or the bench PostgreSQL database recreated."""

    def __init__(self, kind: str, pg_url: str):
        self.kind, self.pg_url = kind, pg_url
        self.workdir = None

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.workdir = Path(tempfile.mkdtemp(prefix="vapisync-bench-"))
            return f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        if self.kind != "postgres":
            raise SystemExit(f"unknown database {self.kind!r}: sqlite or postgres")
        name = urlsplit(self.pg_url).path.lstrip("/")
        if not name or name in ("test", "test_test", "postgres"):
            raise SystemExit(f"refusing to benchmark in database {name!r}: name a dedicated one in BENCH_PG_URL")
        self._admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        return self.pg_url

    def __exit__(self, *exc):
        if self.kind == "sqlite":
            for path in self.workdir.iterdir():
                path.unlink()
            self.workdir.rmdir()
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{urlsplit(self.pg_url).path.lstrip("/")}"')

    def _admin(self, *statements):
        import psycopg

        parts = urlsplit(self.pg_url)
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


class Emulator:
    """bench/emulator_server.py in its own process, with the fault control channel."""

    def __init__(self, assistants: int, phones: int):
        self.assistants, self.phones = assistants, phones

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        print(f"Seeding the emulator with {self.assistants:,} assistants and {self.phones:,} phone numbers…", flush=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "emulator_server.py"), "--port", str(port), "--control",
             "--assistants", str(self.assistants), "--phones", str(self.phones)],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.proc.kill()
            raise SystemExit(f"emulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def faults(self, **faults):
        request = urllib.request.Request(self.url + "/__control", data=json.dumps(faults).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def run_child(step: str, params: dict, env: dict) -> dict:
    full_env = {**os.environ, **base_env(), **env}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", step, "--child-args", json.dumps(params)],
        env=full_env, capture_output=True, text=True,
    )
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if proc.returncode or result is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench step {step} failed (exit {proc.returncode})")
    if step != "migrate":
        print(f"  {result['label']:<46} {result['seconds']:>8.2f} s  peak {result.get('peak_mb', 0):>6.0f} MB  "
              f"{result['requests']:>6} requests  {result['queries']:>6} queries"
              + (f"  {result['write_rate']:.1f} writes/s, {result['rate_limited']} × 429" if "write_rate" in result else ""),
              flush=True)
    return result


def base_env() -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": "globalvoice.settings",
        "ENV_FILE": "",
        "SECRET_KEY": "bench-only-secret",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "VAPI_API_KEY": "bench-key",
        "CELERY_BROKER_URL": "",
        "LOG_LEVEL": "WARNING",
    }


# --- one measured step (child process) ----------------------------------------------------------


def child(step: str, params: dict) -> None:
    import django

    django.setup()
    if step == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print("RESULT {}")
        return
    from vapisync.services.clients import sync_client

    client = sync_client()
    baseline_mb = rss_mb()
    steps = {"floor": step_floor, "write_floor": step_write_floor, "import": step_import, "noop": step_noop,
             "export": step_export}
    profile_to = os.environ.get("BENCH_PROFILE_DIR")
    if profile_to:  # the figures of a profiled run are slower: the profile is what is wanted
        import cProfile

        with cProfile.Profile() as profile:
            row = steps[step](client, **params)
        name = f"{step}-{os.environ['DATABASE_URL'].split(':', 1)[0]}-{time.strftime('%H%M%S')}.prof"
        profile.dump_stats(str(Path(profile_to) / name))
    else:
        row = steps[step](client, **params)
    row["peak_mb"] = round(peak_rss_mb(), 1)
    row["baseline_mb"] = round(baseline_mb, 1)
    print("RESULT " + json.dumps(row), flush=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


class QueryCounter:
    """Counts statements sent to the database (an executemany is one). Unlike Django's
    CaptureQueriesContext it does not render each statement's SQL, which on SQLite costs a
    query per parameter batch and would inflate the times measured."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def measure(label, fn, client) -> dict:
    from django.db import connection

    client.stats.reset()
    queries = QueryCounter()
    with connection.execute_wrapper(queries):
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    stats = client.stats.snapshot()
    row = {"label": label, "seconds": round(seconds, 3), "requests": stats["requests"], "queries": queries.count,
           "rate_limited": stats["rate_limited"], "pacing_wait": round(stats["pacing_wait"], 2)}
    if hasattr(result, "status"):
        row["status"], row["counts"] = result.status, result.counts
    return row


def step_floor(client, bookkeeping: bool = False) -> dict:
    """The work no sync can avoid: fetch and parse every page, then one executemany per table (COPY on
    PostgreSQL) of the same local rows the import makes (every column filled, Vapi's values as they are).

    With `bookkeeping`, the "write floor": also the rows an import writes beside them, in the same way
    (a sync record per item holding Vapi's document and the baseline; a history row per item holding the
    created values), each JSON column written by orjson. What an import costs beyond this is its own work."""
    import uuid

    import orjson
    import requests
    from django.db import connection, transaction
    from django.utils import timezone

    from agents.models import Agent
    from phonenumbers_app.models import PhoneNumber
    from vapisync.models import SyncChange, SyncRecord, SyncRun

    def fetch(session, path):
        docs, cursor, seen = [], None, set()
        while True:
            params = {"limit": 1000}
            if cursor:
                params["createdAtLe"] = cursor
            page = session.get(os.environ["VAPI_BASE_URL"] + path, params=params, timeout=60).json()
            page = page["results"] if isinstance(page, dict) else page
            fresh = [d for d in page if d["id"] not in seen]
            seen.update(d["id"] for d in fresh)
            docs.extend(fresh)
            client.stats.add(requests=1)
            if len(page) < 1000 or not fresh:
                return docs
            cursor = page[-1]["createdAt"]

    def insert(model, rows):
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        sql = (f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) "
               f"VALUES ({', '.join(['%s'] * len(fields))})")
        values = [[row.get(f.attname) for f in fields] for row in rows]
        if model is SyncRecord or model is SyncChange:
            json_columns = [i for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"]
            for value in values:
                for i in json_columns:
                    value[i] = None if value[i] is None else orjson.dumps(value[i]).decode()
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":  # COPY, as the import's bulk rows go there
                with cursor.cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) "
                                        "FROM STDIN") as copy:
                    for value in values:
                        copy.write_row(value)
            else:
                cursor.executemany(sql, values)

    def floor():
        session = requests.Session()
        session.headers["Authorization"] = "Bearer bench-key"
        assistants, numbers = fetch(session, "/assistant"), fetch(session, "/phone-number")
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        common = {"sync_status": "synced", "last_synced_at": now, "sync_error": "", "version": 1,
                  "created_at": now, "updated_at": now}
        # Each item's mapped fields: its local row's columns, and (write floor) its baseline and created values.
        items = [("assistants", d, {
            "name": d.get("name", "")[:40], "first_message": d.get("firstMessage", ""),
            "system_prompt": d["model"]["messages"][0]["content"], "model_provider": d["model"]["provider"],
            "model": d["model"]["model"], "voice_provider": d["voice"]["provider"], "voice_id": d["voice"]["voiceId"],
        }) for d in assistants] + [("phone_numbers", d, {
            "number": d.get("number"), "sip_uri": "", "name": d.get("name", ""), "provider": d.get("provider", ""),
            "vapi_assistant_id": d.get("assistantId"),
        }) for d in numbers]
        insert(Agent, [{**common, **fields, "uuid": uuid.uuid4().hex, "vapi_assistant_id": d["id"]}
                       for resource, d, fields in items if resource == "assistants"])
        insert(PhoneNumber, [{**common, **fields, "vapi_phone_id": d["id"], "agent_id": None}
                             for resource, d, fields in items if resource == "phone_numbers"])
        if bookkeeping:
            insert(SyncRecord, [{
                "resource": resource, "vapi_id": d["id"], "local_id": i, "baseline": fields, "remote": d,
                "remote_updated_at": d["updatedAt"], "synced_at": now, "clean_mark": "",
            } for i, (resource, d, fields) in enumerate(items, 1)])
            insert(SyncChange, [{
                "run_id": run.pk, "resource": resource, "action": "create", "side": "local", "local_id": i,
                "vapi_id": d["id"], "label": fields["name"] or d["id"], "before": None, "after": {"version": 1},
                "diff": {k: [None, v] for k, v in sorted(fields.items())}, "reason": "", "error": "", "created_at": now,
            } for i, (resource, d, fields) in enumerate(items, 1)])
        return len(assistants) + len(numbers)

    run = SyncRun.objects.create(direction="import", trigger="cli")
    label = ("write floor (the floor + sync records and history rows)" if bookkeeping
             else "floor (fetch, parse, one bulk insert per table)")
    row = measure(label, floor, client)
    for model in (SyncChange, SyncRecord, PhoneNumber, Agent):
        model.objects.all()._raw_delete(connection.alias)
    run.delete()
    return row


def step_write_floor(client) -> dict:
    return step_floor(client, bookkeeping=True)


def step_import(client) -> dict:
    from vapisync.models import Direction
    from vapisync.services.runs import sync_run_start

    return measure("import (empty database)",
                   lambda: sync_run_start(direction=Direction.IMPORT, trigger="cli", client=client), client)


def step_noop(client) -> dict:
    from vapisync.models import Direction
    from vapisync.services.runs import sync_run_start

    return measure("no-op full sync", lambda: sync_run_start(direction=Direction.FULL, trigger="cli", client=client), client)


def step_export(client, changes: int, tag: str) -> dict:
    """Export `changes` local edits; time the write phase from Vapi's answers to the PATCHes."""
    import threading

    from agents.models import Agent
    from vapisync.models import Direction
    from vapisync.services.runs import sync_run_start

    ids = list(Agent.objects.order_by("pk").values_list("pk", flat=True)[:changes])
    # update(), not save(): save() would also queue an automatic push of each change.
    Agent.objects.filter(pk__in=ids).update(system_prompt=f"Changed locally for the benchmark ({tag}).")
    writes = []
    lock = threading.Lock()

    def record(response, *args, **kwargs):
        if response.request.method in ("PATCH", "POST", "DELETE"):
            with lock:
                writes.append((time.monotonic(), response.status_code, getattr(client, "pacing_rate", 0.0)))
        return response

    client.session.hooks["response"].append(record)
    row = measure(f"export of {len(ids)} local changes", lambda: sync_run_start(
        direction=Direction.EXPORT, trigger="cli", client=client), client)
    answered = [t for t, status, _ in writes if 200 <= status < 300]
    span = (max(answered) - min(answered)) if len(answered) > 1 else 0.0
    row["writes"] = len(answered)
    row["write_rate"] = round((len(answered) - 1) / span, 1) if span else 0.0
    row["write_429"] = sum(1 for _, status, _ in writes if status == 429)
    row["pacing_rate_end"] = round(getattr(client, "pacing_rate", 0.0), 1)
    if os.environ.get("BENCH_TRACE"):
        t0 = min(t for t, _, _ in writes)
        Path(os.environ["BENCH_TRACE"]).write_text("\n".join(f"{t - t0:.3f} {s} {r:.1f}" for t, s, r in writes))
    return row


# --- rendering ------------------------------------------------------------------------------------


def render(report: dict) -> str:
    lines = [f"Measured {report['recorded_at']} on {report['machine']} (shared with other jobs: expect some noise). "
             "The emulator runs in its own process over loopback HTTP; each step runs in its own process, so its "
             "peak memory (RSS, including Django and Python themselves) is its own."
             + (f" Each step starts from an empty database {report['sync'][0].get('rounds', 1)} times; the table keeps "
                "the fastest round." if report["sync"] and report["sync"][0].get("rounds", 1) > 1 else ""), ""]
    if report["sync"]:
        lines += ["| database | assistants + numbers | step | time | × floor | × write floor | peak memory | requests to Vapi | SQL queries | queries per 1,000 records |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        floors, write_floors = {}, {}
        for row in report["sync"]:
            key = (row["database"], row["assistants"])
            if row["label"].startswith("floor"):
                floors[key] = row["seconds"] or 1e-9
            if row["label"].startswith("write floor"):
                write_floors[key] = row["seconds"] or 1e-9
            records = row["assistants"] + row["phone_numbers"]
            over_writes = f"{row['seconds'] / write_floors[key]:.2f}" if key in write_floors else "–"
            lines.append(
                f"| {row['database']} | {row['assistants']:,} + {row['phone_numbers']:,} | {row['label']} | "
                f"{row['seconds']:.2f} s | {row['seconds'] / floors.get(key, row['seconds'] or 1e-9):.2f} | {over_writes} | "
                f"{row['peak_mb']:.0f} MB | {row['requests']:,} | {row['queries']:,} | {row['queries'] * 1000 / records:.1f} |"
            )
        lines += growth(report["sync"])
    if report["exports"]:
        lines += ["", f"Exports of local changes (the engine's PATCHes, up to {report['options']['changes']:,}) against the "
                  f"emulator with {report['exports'][0]['latency_ms']:g} ms latency and a token-bucket rate limit (burst of "
                  "one second, 429 with Retry-After); write rate over the write phase (first to last answered write):", "",
                  "| Vapi's limit | client pacing | writes | write rate | share of the limit | requests answered 429 | run | whole export |",
                  "|---:|---|---:|---:|---:|---:|---|---:|"]
        for row in report["exports"]:
            limit = f"{row['limit']:g}/s" if row["limit"] else "none"
            share = f"{row['write_rate'] / row['limit']:.0%}" if row["limit"] else "–"
            lines.append(
                f"| {limit} | {row['pacing']} | {row['writes']:,} | {row['write_rate']:.1f}/s | {share} | "
                f"{row['rate_limited']} ({row['rate_limited'] / max(row['requests'], 1):.1%}) | {row['status']} | {row['seconds']:.1f} s |"
            )
    return "\n".join(lines)


def growth(rows: list[dict]) -> list[str]:
    """How time and peak memory grow between the smallest and largest size, per database and step."""
    out = []
    by_key = {}
    for row in rows:
        by_key.setdefault((row["database"], row["label"]), []).append(row)
    for (database, label), group in by_key.items():
        if len(group) < 2 or "floor" in label:
            continue
        small, large = min(group, key=lambda r: r["assistants"]), max(group, key=lambda r: r["assistants"])
        factor = large["assistants"] / small["assistants"]
        out.append(f"{database}, {label}: {factor:g}× the records took {large['seconds'] / small['seconds']:.1f}× the time "
                   f"and {large['peak_mb'] / small['peak_mb']:.1f}× the peak memory ({small['peak_mb']:.0f} → {large['peak_mb']:.0f} MB).")
    return ["", "Growth from the smallest to the largest size: " + " ".join(out)] if out else []


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = f"<!-- BENCH:START -->\n{table}\n<!-- BENCH:END -->"
    if "<!-- BENCH:START -->" in text:
        text = re.sub(r"<!-- BENCH:START -->.*?<!-- BENCH:END -->", lambda _: block, text, flags=re.S)
        readme.write_text(text)
        print("README.md updated.")
    else:
        print("README.md has no BENCH markers; figures not written there.")


if __name__ == "__main__":
    main()
