"""Install the default Vapi sync schedules for django-celery-beat (editable in the admin).

The same as `manage.py setup_periodic_tasks`; schedules that already exist are kept as they are.
"""

from django.db import migrations


def install(apps, schema_editor):
    from vapisync.services.schedules import periodic_tasks_setup

    periodic_tasks_setup(apps=apps)


def uninstall(apps, schema_editor):
    from vapisync.services.schedules import DEFAULT_SCHEDULES

    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=list(DEFAULT_SCHEDULES)).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("vapisync", "0002_sync_page"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
