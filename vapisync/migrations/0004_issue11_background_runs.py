"""Runs can be `interrupted`; the stored sync status; its periodic check for celery beat."""

import django.db.models.deletion
from django.db import migrations, models

STATUS_CHECK = "Vapi sync: status check"


def install_status_check(apps, schema_editor):
    """Every 10 minutes; kept as the admin edited it if it exists (like the other default schedules)."""
    from django.utils import timezone

    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    if PeriodicTask.objects.filter(name=STATUS_CHECK).exists():
        return
    interval, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    PeriodicTask.objects.create(
        name=STATUS_CHECK, task="vapisync.tasks.status_snapshot_refresh_task", interval=interval, enabled=True,
        args="[]", kwargs="{}", description="Compares both sides and stores the status the Vapi Sync page shows.",
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def uninstall_status_check(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=STATUS_CHECK).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('vapisync', '0003_default_schedules'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.AlterField(
            model_name='syncrun',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('partial', 'Partly failed'), ('failed', 'Failed'), ('interrupted', 'Interrupted')], db_index=True, default='queued', max_length=12),
        ),
        migrations.CreateModel(
            name='SyncStatusSnapshot',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(default='status', max_length=20, unique=True)),
                ('resources', models.JSONField(blank=True, default=dict, help_text='resource -> {vapi, would_change}')),
                ('computed_at', models.DateTimeField(blank=True, null=True)),
                ('source', models.CharField(blank=True, default='', help_text='run, check, schedule', max_length=20)),
                ('vapi_ok_at', models.DateTimeField(blank=True, help_text='Last time Vapi answered a status check.', null=True)),
                ('vapi_error', models.TextField(blank=True, default='')),
                ('vapi_error_at', models.DateTimeField(blank=True, null=True)),
                ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='vapisync.syncrun')),
            ],
        ),
        migrations.RunPython(install_status_check, uninstall_status_check),
    ]
