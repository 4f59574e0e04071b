"""`manage.py setup_periodic_tasks`: install the default Vapi sync schedules (django-celery-beat).

    python manage.py setup_periodic_tasks            # add the missing ones, keep admin edits
    python manage.py setup_periodic_tasks --reset    # put the defaults back

`migrate` installs them too (vapisync migration 0003); edit them in the admin under Periodic tasks.
Beat must run with the DatabaseScheduler (the Procfile's `beat` line) to follow them.
"""

from django.core.management.base import BaseCommand

from vapisync.services.schedules import DEFAULT_SCHEDULES, periodic_tasks_setup


class Command(BaseCommand):
    help = "Create the default Vapi sync schedules (delta import, nightly full sync, reconciler) for celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true",
                            help="Restore the default schedule of tasks that exist (undoes edits made in the admin).")

    def handle(self, *args, reset=False, **options):
        done = periodic_tasks_setup(reset=reset)
        for name, what in done.items():
            task, schedule, _ = DEFAULT_SCHEDULES[name]
            when = (f"every {schedule['every']} {schedule['period']}" if "every" in schedule
                    else f"at {int(schedule['hour']):02d}:{int(schedule['minute']):02d}")
            style = self.style.SUCCESS if what in ("created", "reset") else self.style.WARNING
            if options["verbosity"] >= 1:
                self.stdout.write(style(f"{what:8} {name} ({task}, {when})"))
