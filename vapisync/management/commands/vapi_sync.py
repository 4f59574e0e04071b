"""`manage.py vapi_sync`: the Vapi sync from the command line, a thin layer over the sync services.

Examples:
    manage.py vapi_sync status                       database vs Vapi, what a full sync would do
    manage.py vapi_sync plan                         full dry run: list every planned change
    manage.py vapi_sync full                         full two-way sync (assistants, then phone numbers)
    manage.py vapi_sync import --resource agents     import assistants from Vapi as agents
    manage.py vapi_sync import --delta               import only what changed in Vapi since the last import
    manage.py vapi_sync export --resource agents --ids 12,15 --dry-run
    manage.py vapi_sync import --resource phone-numbers --ids 5b0c6a2e-...   (a Vapi id)
    manage.py vapi_sync runs --limit 5               recent runs
    manage.py vapi_sync show 42 -v 2                 one run with its changes
    manage.py vapi_sync rollback 42                  undo what run 42 changed (a new run)
    manage.py vapi_sync conflicts                    records changed on both sides
    manage.py vapi_sync resolve agents 7 --keep vapi
    manage.py vapi_sync delete-in-vapi 5b0c6a2e-... --no-input
    manage.py vapi_sync full --json | jq .counts     machine-readable: JSON on stdout and nothing else
    manage.py vapi_sync full --user alice            record alice as the user who started the run

Who: actions that start a run (plan, import, export, full, rollback, resolve, delete-in-vapi) record
the user given with --user, else the Django user named like the account running the command (if there
is one), else nobody. A recorded user needs the vapisync.run_sync permission, as in the API and the admin.

Output: a summary on stdout; -v 0 prints nothing but errors (on stderr), -v 2 lists each change,
-v 3 adds each changed field's old and new value. A progress bar goes to stderr only when stderr
is a terminal (never with --json or -v 0): per phase, records written of those that need work, with
the time left. With --json, stdout holds exactly one JSON document:
the run (as the API returns it), the status, the run list, or on error {"detail", "code", ...}.

Exit status: 0 succeeded; 1 the run partly failed or failed, another sync is in progress (its id
is in the message), or Vapi could not be reached for `status`/`health`; 2 usage or configuration
error (bad option, VAPI_API_KEY missing, a failing system check, no such run, a run that cannot
be rolled back, a record not in conflict).

The command always runs the sync in this process (with a Celery broker configured, too), so what
it prints is the finished result.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, SystemCheckError
from rest_framework.utils.encoders import JSONEncoder
from tqdm import tqdm

from vapisync import selectors
from vapisync.api.serializers import (
    HealthSerializer,
    RunDetailSerializer,
    RunSerializer,
    RunSummarySerializer,
    SyncStatusSerializer,
)
from vapisync.conf import vapi_settings
from vapisync.exceptions import (
    NothingToResolve,
    RollbackNotPossible,
    SyncAlreadyRunning,
    UnknownLocalIds,
    VapiNotConfigured,
    VapiSyncError,
)
from vapisync.models import Direction, RunStatus, Trigger
from vapisync.permissions import user_can_run_sync
from vapisync.resources import REGISTRY, RESOURCE_ORDER, resource_spec
from vapisync.services.conflicts import conflict_resolve
from vapisync.services.deletions import assistants_delete_request
from vapisync.services.health import sync_health_check
from vapisync.services.rollback import sync_run_rollback
from vapisync.services.runs import runs_reap_interrupted, sync_run_start
from vapisync.services.selection import local_ids_check
from vapisync.services.status import status_snapshot_refresh

USAGE, FAILED = 2, 1
# The registry's public names, spelled for a command line ("phone-numbers"), and for its output.
RESOURCE_CHOICES = {
    **{spec.public_name.replace("_", "-"): [str(spec.resource)] for spec in REGISTRY.values()},
    "all": [str(resource) for resource in RESOURCE_ORDER],
}
RESOURCE_LABEL = {str(spec.resource): spec.public_name.replace("_", " ") for spec in REGISTRY.values()}
COUNT_KEYS = ("created", "updated", "unchanged", "deleted", "conflicts", "failed", "skipped")
SHOW_CHANGES = 500


class Command(BaseCommand):
    help = (
        "Synchronise agents and phone numbers with Vapi: status | plan | import | export | full | runs | show RUN_ID "
        "| rollback RUN_ID | conflicts | resolve RESOURCE ID --keep vapi|local | delete-in-vapi VAPI_ID... | health. "
        "Exit status: 0 succeeded, 1 partly failed or failed, 2 usage or configuration error. "
        "Run `manage.py vapi_sync ACTION --help` for an action's options; examples below."
    )
    # Checks run in handle(), so a configuration error exits 2 like the others.
    requires_system_checks = []

    # --- arguments ---------------------------------------------------------------------------

    def add_arguments(self, parser):
        parser.epilog = __doc__.split("\n\n", 1)[1]
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

        def action(name, help_text, *, json_output=True):
            sub = actions.add_parser(name, help=help_text, description=help_text)
            _add_django_options(sub)
            if json_output:
                sub.add_argument("--json", action="store_true", help="Print one JSON document on stdout and nothing else.")
            sub.add_argument("--skip-checks", action="store_true", help="Skip Django's system checks.")
            return sub

        def user_option(sub):
            sub.add_argument(
                "--user", metavar="USERNAME", default=None,
                help="The Django user recorded as having started the run (needs vapisync.run_sync). "
                "Default: the user named like the account running this command, if there is one.",
            )
            return sub

        def sync_options(sub, *, ids=True, dry_run=True):
            user_option(sub)
            sub.add_argument(
                "--resource", choices=list(RESOURCE_CHOICES), default="all",
                help="What to sync: agents (Vapi assistants), phone-numbers, or all (default).",
            )
            if dry_run:
                sub.add_argument("--dry-run", action="store_true", help="Plan only: show what would change, change nothing.")
            if ids:
                sub.add_argument(
                    "--ids", metavar="ID,ID,...",
                    help="Only these records (needs --resource agents or phone-numbers): integers are local ids, "
                    "anything else Vapi ids.",
                )

        sub = action("status", "Database vs Vapi counts, drift, last and active run (compares with Vapi now).")
        sub.add_argument("--local", action="store_true", help="Do not read Vapi: database side only.")
        sub.add_argument("--cached", action="store_true",
                         help="Show the stored comparison (as the admin page does) instead of reading Vapi now.")
        sync_options(action("plan", "Full dry run: every change a full sync would make (nothing is changed)."),
                     ids=True, dry_run=False)
        sub = action("import", "Import from Vapi (assistants as agents, phone numbers).")
        sync_options(sub)
        sub.add_argument("--delta", action="store_true", help="Fetch only what changed in Vapi since the last import.")
        sync_options(action("export", "Export agents to Vapi as assistants, push phone number changes."))
        sync_options(action("full", "Full two-way sync: assistants, then phone numbers."))
        sub = action("runs", "Recent runs, newest first.")
        sub.add_argument("--limit", type=_positive_int, default=20, help="How many (default 20).")
        action("show", "One run with its changes.").add_argument("run_id", type=_positive_int, metavar="RUN_ID")
        user_option(action("rollback", "Undo what a run changed, on both sides (as a new run).")).add_argument(
            "run_id", type=_positive_int, metavar="RUN_ID")
        action("conflicts", "Records changed on both sides, waiting for resolve.")
        sub = user_option(action("resolve", "Settle one conflict by keeping Vapi's or the local version."))
        sub.add_argument("resource", choices=[name for name in RESOURCE_CHOICES if name != "all"], metavar="RESOURCE",
                         help="agents or phone-numbers")
        sub.add_argument("record_id", type=_positive_int, metavar="ID", help="The local id.")
        sub.add_argument("--keep", choices=["vapi", "local"], required=True)
        sub = user_option(action("delete-in-vapi", "Delete in Vapi the assistants of agents deleted here."))
        sub.add_argument("vapi_ids", nargs="+", metavar="VAPI_ID")
        sub.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                         help="Do not ask for confirmation.")
        action("health", "Vapi configured and reachable, database, broker.")

    # --- dispatch ------------------------------------------------------------------------------

    def handle(self, *args, action, **options):
        self.as_json = options.get("json", False)
        self.verbosity = options.get("verbosity", 1)
        if not options.get("skip_checks"):
            try:
                self.check(display_num_errors=False)
            except SystemCheckError as exc:
                raise CommandError(f"Configuration error:\n{exc}", returncode=USAGE) from exc
        try:
            getattr(self, "do_" + action.replace("-", "_"))(**options)
        except VapiNotConfigured as exc:
            raise self._error(exc, USAGE) from exc
        except (RollbackNotPossible, NothingToResolve) as exc:
            raise self._error(exc, USAGE) from exc
        except SyncAlreadyRunning as exc:
            raise self._error(exc, FAILED) from exc
        except VapiSyncError as exc:
            raise self._error(exc, FAILED) from exc

    def _error(self, exc, returncode: int, code: str | None = None) -> CommandError:
        """Report an error: as JSON on stdout with --json, and always as the CommandError message."""
        if self.as_json:
            body = {"detail": str(exc), "code": code or getattr(exc, "code", "error")}
            body.update(getattr(exc, "extra", {}) or {})
            self._emit(body)
        return CommandError(str(exc), returncode=returncode)

    def _usage(self, message: str) -> CommandError:
        return self._error(CommandError(message), USAGE, code="usage")

    def _require_vapi(self):
        if not vapi_settings().configured:
            raise VapiNotConfigured()

    def _acting_user(self, username: str | None):
        """The user recorded on the run: --user, else the Django user named like the OS account, else None.
        Either way the project's one rule applies (vapisync.permissions): it must hold vapisync.run_sync."""
        model = get_user_model()
        if username is not None:
            user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
            if user is None:
                raise self._usage(f"--user {username}: there is no user of that name here.")
        else:
            user = model._default_manager.filter(**{model.USERNAME_FIELD: _os_username()}).first() if _os_username() else None
        if user is not None and not user_can_run_sync(user):
            how = "" if username is not None else " (the user named like this account; name another with --user)"
            raise self._error(CommandError(
                f"User {user.get_username()!r}{how} may not start syncs: that needs the vapisync.run_sync permission."
            ), USAGE, code="permission_denied")
        return user

    # --- actions --------------------------------------------------------------------------------

    def do_status(self, *, local=False, cached=False, **options):
        runs_reap_interrupted()
        if not (local or cached) and vapi_settings().configured:
            status_snapshot_refresh(source="check")
        data = SyncStatusSerializer(selectors.sync_status_get(check_remote=not local)).data
        if self.as_json:
            self._emit(data)
        elif self.verbosity >= 1:
            self._print_status(data)
        if not data["configured"]:
            raise CommandError("Vapi sync is disabled: set VAPI_API_KEY.", returncode=USAGE)
        if data["vapi_error"]:
            raise CommandError(f"Vapi could not be read: {data['vapi_error']}", returncode=FAILED)

    def do_health(self, **options):
        data = HealthSerializer(sync_health_check()).data
        if self.as_json:
            self._emit(data)
        elif self.verbosity >= 1:
            vapi = data["vapi"]
            self.stdout.write(f"Status:   {self._styled_status(data['status'])}")
            self.stdout.write(f"Vapi:     configured={_yes(vapi['configured'])} reachable={_yes(vapi['reachable'])} "
                              f"({vapi['base_url']}){' - ' + vapi['error'] if vapi.get('error') else ''}")
            self.stdout.write(f"Database: ok={_yes(data['database']['ok'])}")
            self.stdout.write(f"Broker:   {data['broker']['mode']} ok={_yes(data['broker']['ok'])}")
        if data["status"] == "disabled":
            raise CommandError("Vapi sync is disabled: set VAPI_API_KEY.", returncode=USAGE)
        if data["status"] != "ok":
            raise CommandError("Vapi sync is degraded.", returncode=FAILED)

    def do_plan(self, **options):
        self._sync(Direction.FULL, dry_run=True, **options)

    def do_import(self, **options):
        self._sync(Direction.IMPORT, **options)

    def do_export(self, **options):
        self._sync(Direction.EXPORT, **options)

    def do_full(self, **options):
        self._sync(Direction.FULL, **options)

    def _sync(self, direction, *, resource, ids=None, dry_run=False, delta=False, user=None, **options):
        acting = self._acting_user(user)
        resources = RESOURCE_CHOICES[resource]
        local_ids, vapi_ids = {}, {}
        if ids is not None:
            if len(resources) != 1:
                raise self._usage("--ids needs --resource agents or --resource phone-numbers.")
            if delta:
                raise self._usage("Use either --ids or --delta, not both.")
            local_ids[resources[0]], vapi_ids[resources[0]] = self._parse_ids(ids, resources[0])
        self._require_vapi()
        bar = self._progress_bar()
        try:
            run = sync_run_start(
                direction=direction, resources=resources, trigger=Trigger.CLI, user=acting, dry_run=dry_run, delta=delta,
                local_ids=local_ids, vapi_ids=vapi_ids, progress=bar,
            )
        finally:
            if bar is not None:
                bar.close()
        self._report_run(run)

    def do_runs(self, *, limit, **options):
        runs = list(selectors.sync_run_list(limit=limit))
        if self.as_json:
            self._emit(RunSummarySerializer(runs, many=True).data)
            return
        if self.verbosity < 1:
            return
        if not runs:
            self.stdout.write("No sync runs yet.")
        for run in runs:
            when = (run.started_at or run.created_at).strftime("%Y-%m-%d %H:%M:%S")
            dry = " (dry run)" if run.dry_run else ""
            self.stdout.write(
                f"{run.pk:>6}  {when}  {run.direction:<8} {self._styled_status(run.status):<9}  "
                f"{run.trigger:<8} {run.user.get_username() if run.user else '-':<12} {_counts_brief(run.counts)}{dry}"
            )

    def do_show(self, *, run_id, **options):
        run = selectors.sync_run_get(run_id=run_id)
        if run is None:
            raise self._usage(f"There is no sync run {run_id}.")
        if self.as_json:
            self._emit(RunDetailSerializer(run).data)
            return
        if self.verbosity >= 1:
            self._print_run(run)
            self._print_changes(run, force=True)

    def do_rollback(self, *, run_id, user=None, **options):
        acting = self._acting_user(user)
        self._require_vapi()
        self._report_run(sync_run_rollback(run_id=run_id, trigger=Trigger.CLI, user=acting))

    def do_conflicts(self, **options):
        items = selectors.conflicts_list()
        if self.as_json:
            self._emit([{**item, "resource": RESOURCE_LABEL[item["resource"]].replace(" ", "_")} for item in items])
            return
        if self.verbosity < 1:
            return
        if not items:
            self.stdout.write("No conflicts.")
        for item in items:
            self.stdout.write(f"{RESOURCE_LABEL[item['resource']]:<14} {item['local_id']:>6}  {item['label']}  {item['message']}")
        if items:
            self.stdout.write("Resolve with: manage.py vapi_sync resolve agents|phone-numbers ID --keep vapi|local")

    def do_resolve(self, *, resource, record_id, keep, user=None, **options):
        acting = self._acting_user(user)
        engine_resource = RESOURCE_CHOICES[resource][0]
        record = resource_spec(engine_resource).model.objects.filter(pk=record_id).first()
        if record is None:
            raise self._usage(f"There is no {resource[:-1]} with id {record_id}.")
        self._report_run(conflict_resolve(resource=engine_resource, local_id=record.pk, keep=keep, trigger=Trigger.CLI,
                                          user=acting))

    def do_delete_in_vapi(self, *, vapi_ids, interactive=True, user=None, **options):
        acting = self._acting_user(user)
        self._require_vapi()
        if interactive and sys.stdin.isatty() and not self.as_json:
            answer = input(f"Delete {len(vapi_ids)} assistant(s) in Vapi? This cannot be undone there "
                           "(a rollback re-creates them with new ids). Type 'yes' to continue: ")
            if answer.strip().lower() != "yes":
                raise CommandError("Cancelled.", returncode=FAILED)
        self._report_run(assistants_delete_request(vapi_ids=vapi_ids, trigger=Trigger.CLI, user=acting))

    # --- output ---------------------------------------------------------------------------------

    def _parse_ids(self, raw: str, resource: str) -> tuple[list[int], list[str]]:
        items = [part.strip() for part in raw.split(",")]
        if not all(items):
            raise self._usage(f"--ids {raw!r}: empty id (use commas between ids, nothing else).")
        digits = [item for item in items if item.isascii() and item.isdigit()]
        local = [int(item) for item in digits]
        try:
            local_ids_check(resource, local)
        except UnknownLocalIds as exc:
            raise self._usage(f"--ids: {exc}") from exc
        return local, [item for item in items if item not in digits]

    def _emit(self, data) -> None:
        self.stdout.write(json.dumps(data, cls=JSONEncoder, indent=2, ensure_ascii=False))

    def _progress_bar(self):
        if self.as_json or self.verbosity < 1 or not self.stderr.isatty():
            return None
        return _ProgressBar(self.stderr._out)

    def _report_run(self, run) -> None:
        if self.as_json:
            self._emit(RunSerializer(run).data)
        elif self.verbosity >= 1:
            self._print_run(run)
            self._print_changes(run)
        if run.status in (RunStatus.PARTIAL, RunStatus.FAILED):
            errors = run.errors or []
            first = errors[0]["message"] if errors else run.message
            raise CommandError(
                f"Run {run.pk} {run.get_status_display().lower()}: {len(errors)} error(s); first: {first}"
                if errors else f"Run {run.pk} {run.get_status_display().lower()}: {run.message}",
                returncode=FAILED,
            )

    def _print_run(self, run) -> None:
        took = ""
        if run.started_at and run.finished_at:
            took = f" in {(run.finished_at - run.started_at).total_seconds():.1f} s"
        kind = run.get_direction_display() + (" - dry run, nothing changed" if run.dry_run else "")
        rollback = f" of run {run.rollback_of_id}" if run.rollback_of_id else ""
        self.stdout.write(f"Run {run.pk}: {kind}{rollback}: {self._styled_status(run.status)}{took}")
        for resource in run.resources or []:
            counts = (run.counts or {}).get(resource) or {}
            figures = ", ".join(f"{key} {counts.get(key, 0)}" for key in COUNT_KEYS)
            self.stdout.write(f"  {RESOURCE_LABEL[resource]:<14} {'would be: ' if run.dry_run else ''}{figures}")
        if run.message:
            self.stdout.write(f"  {run.message}")
        for error in (run.errors or [])[:20]:
            where = " ".join(str(part) for part in (
                RESOURCE_LABEL.get(error.get("resource"), error.get("resource")),
                error.get("label") or error.get("vapi_id") or error.get("local_id"),
            ) if part)
            self.stdout.write(self.style.ERROR(f"  ! {where + ': ' if where else ''}{error['message']}"))
        if len(run.errors or []) > 20:
            self.stdout.write(f"  ... and {len(run.errors) - 20} more errors (manage.py vapi_sync show {run.pk} --json)")

    def _print_changes(self, run, *, force: bool = False) -> None:
        """Planned changes of a dry run (at -v 1 and up), recorded changes at -v 2 (or `show`)."""
        if run.dry_run:
            items = run.plan or []
            if self.verbosity < 1:
                return
            if not items:
                self.stdout.write("  Nothing would change.")
        else:
            if self.verbosity < 2 and not force:
                return
            items = list(run.changes.order_by("id").values(
                "resource", "action", "side", "local_id", "vapi_id", "label", "diff", "reason", "error")[:SHOW_CHANGES])
        for item in items[:SHOW_CHANGES]:
            side = {"local": "database", "vapi": "Vapi"}.get(item.get("side") or "", "")
            name = item.get("label") or item.get("vapi_id") or item.get("local_id")
            line = f"  {item['action']:<12} {RESOURCE_LABEL.get(item['resource'], item['resource']):<14} {side:<9} {name}"
            diff = item.get("diff") or {}
            if diff and self.verbosity >= 3:
                line += "".join(f"\n      {field}: {old!r} -> {new!r}" for field, (old, new) in diff.items())
            elif diff:
                line += f"  ({', '.join(diff)})"
            note = item.get("error") or item.get("reason")
            if note:
                line += f"  - {note}"
            self.stdout.write(line)
        total = len(items) if run.dry_run else run.changes.count()
        if total > SHOW_CHANGES:
            self.stdout.write(f"  ... {total - SHOW_CHANGES} more (manage.py vapi_sync show {run.pk} --json, or the API)")

    def _print_status(self, data) -> None:
        verdict = {True: self.style.SUCCESS("in sync"), False: self.style.WARNING("OUT OF SYNC"), None: "unknown"}[data["in_sync"]]
        self.stdout.write(f"Vapi sync status at {data['timestamp']}: {verdict}")
        if not data["configured"]:
            self.stdout.write(self.style.ERROR("Vapi sync is disabled: VAPI_API_KEY is not set."))
        if data["vapi_error"]:
            self.stdout.write(self.style.ERROR(f"Vapi could not be read: {data['vapi_error']}"))
        self.stdout.write(f"  {'':<14} {'database':>8} {'vapi':>6} {'pending':>8} {'conflicts':>9} {'deleted in Vapi':>15}  in sync")
        for resource in RESOURCE_ORDER:
            label = RESOURCE_LABEL[resource]
            entry = data[resource_spec(resource).public_name]
            vapi = "-" if entry["vapi"] is None else entry["vapi"]
            self.stdout.write(
                f"  {label:<14} {entry['database']:>8} {vapi:>6} {entry['pending']:>8} {entry['conflicts']:>9} "
                f"{entry['deleted_in_vapi']:>15}  {_yes(entry['in_sync'])}"
            )
            would = {k: v for k, v in (entry.get("would_change") or {}).items() if v}
            if would:
                self.stdout.write(f"  {'':<14} a full sync would: " + ", ".join(f"{k} {v}" for k, v in would.items()))
        for key, label in (("last_run", "Last run"), ("active_run", "Running now")):
            run = data[key]
            if run:
                self.stdout.write(f"{label}: {run['id']} ({run['direction']}, {run['status']}, {run['trigger']}) "
                                  f"finished {run['finished_at'] or '-'}")

    def _styled_status(self, value: str) -> str:
        style = {"succeeded": self.style.SUCCESS, "ok": self.style.SUCCESS, "partial": self.style.WARNING,
                 "degraded": self.style.WARNING, "failed": self.style.ERROR, "disabled": self.style.ERROR}
        return style.get(value, str)(value)


class _ProgressBar:
    """tqdm on stderr fed by the run's progress reports ({"phase", "total", "checked", "done"}): one bar per
    phase, counting records written against the records that need work, so it ends at 100%; tqdm shows
    the rate and the time left. A phase without a total (reading Vapi) counts what it checked."""

    def __init__(self, stream):
        self.stream = stream
        self.phase = None
        self.bar = None

    def __call__(self, state: dict) -> None:
        phase = state.get("phase")
        if phase == "finished":
            return
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=state.get("total") or None, desc=phase, file=self.stream, leave=True,
                            unit="record", dynamic_ncols=True)
        if self.bar is None:
            return
        total = state.get("total")
        if total:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.n = min(state.get("done") or 0, total)
            if state.get("checked") is not None:
                self.bar.set_postfix_str(f"{state['checked']} checked", refresh=False)
        elif state.get("checked") is not None:
            self.bar.n = state["checked"]
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _add_django_options(sub) -> None:
    """Django's own options, accepted after the action as well (`vapi_sync full -v 2`)."""
    sub.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=argparse.SUPPRESS,
                     help="0 errors only, 1 summary (default), 2 each change, 3 each changed value.")
    sub.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help="Raise on CommandError.")
    sub.add_argument("--no-color", action="store_true", default=argparse.SUPPRESS, help="Plain output.")
    sub.add_argument("--force-color", action="store_true", default=argparse.SUPPRESS, help="Colour even when piped.")
    sub.add_argument("--settings", default=argparse.SUPPRESS, help="A settings module (as for every command).")
    sub.add_argument("--pythonpath", default=argparse.SUPPRESS, help="A directory to add to the Python path.")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer") from None
    if not 1 <= number <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer (a record id)")
    return number


def _os_username() -> str | None:
    """The account running the command (LOGNAME, USER, ... or the password database), if it can be told."""
    try:
        return getpass.getuser() or None
    except (OSError, KeyError, ImportError):
        return None


def _yes(value) -> str:
    return {True: "yes", False: "no", None: "-"}[value]


def _counts_brief(counts: dict) -> str:
    parts = []
    for resource, figures in (counts or {}).items():
        changed = {k: v for k, v in (figures or {}).items() if v and k != "unchanged"}
        text = ", ".join(f"{k} {v}" for k, v in changed.items()) or "no changes"
        parts.append(f"{RESOURCE_LABEL.get(resource, resource)}: {text}")
    return "; ".join(parts)
