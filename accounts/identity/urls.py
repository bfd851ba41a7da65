"""/scim/v2/ (included by config/urls.py)."""

from django.urls import path

from accounts.identity import scim_views

app_name = "scim"

urlpatterns = [
    path("ServiceProviderConfig", scim_views.service_provider_config, name="config"),
    path("ResourceTypes", scim_views.resource_types, name="resource_types"),
    path("Users", scim_views.users, name="users"),
    path("Users/<str:pk>", scim_views.user, name="user"),
    path("Groups", scim_views.groups, name="groups"),
    path("Groups/<str:pk>", scim_views.group, name="group"),
]
