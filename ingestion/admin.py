from django.contrib import admin

from ingestion.models import Collection


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    filter_horizontal = ("readers",)
    prepopulated_fields = {"slug": ("name",)}
