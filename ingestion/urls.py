from django.urls import path

from ingestion import views

app_name = "ingestion"

urlpatterns = [
    path("manage/collections/", views.collection_index, name="collection_list"),
    path("manage/collections/new/", views.collection_create, name="collection_create"),
    path("manage/collections/<int:pk>/", views.collection_detail, name="collection_detail"),
]
