from io import StringIO

from django.conf import settings
from django.core.management import call_command

from accounts.models import AuditEvent, User
from ingestion.models import Collection


def test_load_demo_is_idempotent_and_audited(db):
    call_command("load_demo", stdout=StringIO())
    counts = (User.objects.count(), Collection.objects.count(), AuditEvent.objects.count())
    call_command("load_demo", stdout=StringIO())
    assert (User.objects.count(), Collection.objects.count(), AuditEvent.objects.count()) == counts
    assert User.objects.count() >= 8
    assert Collection.objects.count() >= 5
    assert AuditEvent.objects.filter(action="role.create", actor_username="system").exists()


def test_demo_accounts_sign_in_with_the_demo_password(db):
    call_command("load_demo", stdout=StringIO())
    admin = User.objects.get(username="admin")
    assert admin.check_password(settings.DEMO_PASSWORD)
    assert not admin.is_superuser  # capabilities come from roles; see accounts.selectors
    assert User.objects.get(username="nora").groups.count() == 0


def test_load_demo_if_empty_leaves_a_used_database_alone(db):
    User.objects.create_user("someone", password="x-long-password")
    out = StringIO()
    call_command("load_demo", "--if-empty", stdout=out)
    assert "left as it is" in out.getvalue()
    assert not User.objects.filter(username="admin").exists()


def test_logins_lists_every_demo_account(db):
    out = StringIO()
    call_command("load_demo", "--logins", stdout=out)
    for username in ("admin", "compliance", "sam", "max", "nora"):
        assert f"  {username} " in out.getvalue()
