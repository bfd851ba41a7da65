from django.urls import path

from tuning import views

app_name = "tuning"

urlpatterns = [
    path("manage/adapters/", views.adapter_list, name="adapter_list"),
    path("manage/adapters/train/", views.adapter_train, name="adapter_train"),
    path("manage/adapters/routing/", views.role_strategy, name="role_strategy"),
    path("manage/adapters/<int:pk>/", views.adapter_detail, name="adapter_detail"),
    path("manage/adapters/<int:pk>/activate/", views.adapter_activate, name="adapter_activate"),
    path("manage/adapters/<int:pk>/retire/", views.adapter_retire, name="adapter_retire"),
    path("manage/adapters/<int:pk>/cancel/", views.adapter_cancel, name="adapter_cancel"),
]
