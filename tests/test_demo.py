from io import StringIO

from django.core.management import call_command

from accounts.models import User


def test_load_demo_creates_the_admin_once(db, settings):
    call_command("load_demo", stdout=StringIO())
    call_command("load_demo", stdout=StringIO())
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(settings.DEMO_PASSWORD)
    assert User.objects.count() == 1


def test_load_demo_if_empty_leaves_a_used_database_alone(db):
    User.objects.create_user("someone", password="x-long-password")
    out = StringIO()
    call_command("load_demo", "--if-empty", stdout=out)
    assert "left as it is" in out.getvalue()
    assert not User.objects.filter(username="admin").exists()
