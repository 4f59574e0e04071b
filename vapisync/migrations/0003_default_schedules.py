"""Install the default Vapi sync schedules for django-celery-beat (editable in the admin).

What `manage.py setup_periodic_tasks` installs, as it stood when this migration was written; schedules
that already exist are kept as they are. The data and the install logic are frozen here, with the
historical models, so later changes to the live defaults or to the services never change what this
migration does.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

# name -> (task, schedule, description); "every" means an interval, otherwise a crontab.
SCHEDULES = {
    "Vapi sync: delta import": (
        "vapisync.tasks.scheduled_import_task", {"every": 5, "period": "minutes"},
        "Imports what changed in Vapi since the last import.",
    ),
    "Vapi sync: nightly full sync": (
        "vapisync.tasks.scheduled_full_sync_task", {"minute": "0", "hour": "3"},
        "Full two-way sync, including deletions made in Vapi (03:00, TIME_ZONE).",
    ),
    "Vapi sync: reconcile pending changes": (
        "vapisync.tasks.pending_reconcile_task", {"every": 1, "period": "minutes"},
        "Pushes changes still pending (Vapi or the worker was down) and processes waiting webhook events.",
    ),
}


def install(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, (task, schedule, description) in SCHEDULES.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        if "every" in schedule:
            interval, _ = IntervalSchedule.objects.get_or_create(**schedule)
            kinds = {"interval": interval, "crontab": None}
        else:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE, **schedule)
            kinds = {"interval": None, "crontab": crontab}
        PeriodicTask.objects.create(
            name=name, task=task, description=description, enabled=True, args="[]", kwargs="{}", one_off=False,
            solar=None, clocked=None, **kinds)
    # Tell a running beat (DatabaseScheduler) to reload; historical models skip the model's signals.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def uninstall(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("vapisync", "0002_sync_page"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
