from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from accounts import views
from accounts.identity import oidc
from accounts.identity import views as directory_views

app_name = "accounts"

urlpatterns = [
    # Signing in and out, own password.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The company's OpenID Connect provider (404 unless configured; docs/identity.md).
    path("accounts/oidc/login/", oidc.SignIn.as_view(), name="oidc_login"),
    path("accounts/oidc/callback/", oidc.Callback.as_view(), name="oidc_callback"),
    path("accounts/password/", views.password_change, name="password_change"),
    path("accounts/tokens/", views.token_list, name="token_list"),
    path("accounts/tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Administration.
    path("manage/", RedirectView.as_view(url=reverse_lazy("accounts:user_list")), name="manage"),
    path("manage/users/", views.user_list, name="user_list"),
    path("manage/users/new/", views.user_create, name="user_create"),
    path("manage/users/<int:pk>/", views.user_detail, name="user_detail"),
    path("manage/users/<int:pk>/active/", views.user_set_active, name="user_set_active"),
    path(
        "manage/users/<int:pk>/password/",
        views.user_reset_password,
        name="user_reset_password",
    ),
    path(
        "manage/users/<int:pk>/tokens/<int:token_pk>/revoke/",
        views.user_token_revoke,
        name="user_token_revoke",
    ),
    path("manage/roles/", views.role_list, name="role_list"),
    path("manage/roles/new/", views.role_create, name="role_create"),
    path("manage/roles/<int:pk>/", views.role_detail, name="role_detail"),
    path("manage/roles/<int:pk>/delete/", views.role_delete, name="role_delete"),
    path("manage/profiles/", views.profile_list, name="profile_list"),
    path("manage/audit/", views.audit_list, name="audit_list"),
    path("manage/directory/", directory_views.directory, name="directory"),
    path(
        "manage/directory/mappings/<int:pk>/remove/",
        directory_views.mapping_remove,
        name="directory_mapping_remove",
    ),
    path(
        "manage/directory/tokens/new/", directory_views.scim_token_create, name="scim_token_create"
    ),
    path(
        "manage/directory/tokens/<int:pk>/revoke/",
        directory_views.scim_token_revoke,
        name="scim_token_revoke",
    ),
]
