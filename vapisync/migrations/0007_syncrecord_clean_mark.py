from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("vapisync", "0006_remove_dead_fields")]

    operations = [
        migrations.AddField(
            model_name="syncrecord",
            name="clean_mark",
            field=models.CharField(blank=True, db_default="", default="", max_length=100),
        ),
    ]
