"""The Django admin, for looking only.

It opens to superusers, and it writes straight to the tables: a role's permissions, a user's
roles or activity, or a collection's readers changed there would skip the audit trail, the
separation-of-duties check and the last-administrator check that Counsel's own pages
(`/manage/…`, through accounts.services) apply. So every model that carries access is
read-only here; changes go through Counsel's pages.
"""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from accounts.models import AuditEvent, User


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and shows; never adds, changes or deletes (superusers included)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(User)
class CounselUserAdmin(ReadOnlyAdmin, UserAdmin):
    fieldsets = (*UserAdmin.fieldsets, ("Counsel", {"fields": ("must_change_password",)}))


admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(ReadOnlyAdmin, GroupAdmin):
    """Roles: their capabilities and members are changed at /manage/roles/ (audited)."""


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The trail records changes; nobody edits it."""

    list_display = ("created_at", "actor_username", "action", "target_type", "target_repr")
    list_filter = ("action", "target_type")
    search_fields = ("actor_username", "target_repr")
