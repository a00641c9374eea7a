from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0005_routellm_calibration"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="validation_requeues",
            field=models.PositiveSmallIntegerField(default=0),
        ),
    ]
