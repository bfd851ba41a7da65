from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from ingestion.models import Collection


@admin.register(Collection)
class CollectionAdmin(ReadOnlyAdmin):
    """Readers (and managers) are changed at /manage/collections/ (audited), not here."""

    list_display = ("name", "slug", "created_at")
