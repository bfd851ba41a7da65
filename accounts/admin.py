from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import AuditEvent, User


@admin.register(User)
class CounselUserAdmin(UserAdmin):
    fieldsets = (*UserAdmin.fieldsets, ("Counsel", {"fields": ("must_change_password",)}))


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail records changes; nobody edits it, superusers included."""

    list_display = ("created_at", "actor_username", "action", "target_type", "target_repr")
    list_filter = ("action", "target_type")
    search_fields = ("actor_username", "target_repr")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
