from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from config.views import home

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("", include("accounts.urls")),
    path("scim/v2/", include("accounts.identity.urls")),
    path("", include("ingestion.urls")),
    path("", include("assistant.urls")),
    path("", include("compliance.urls")),
    path("", include("tuning.urls")),
    path("django-admin/", admin.site.urls),
]

handler500 = "config.views.server_error"
