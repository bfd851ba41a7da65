from django.urls import path

from ingestion import api, views

app_name = "ingestion"

urlpatterns = [
    path("manage/collections/", views.collection_index, name="collection_list"),
    path("manage/collections/new/", views.collection_create, name="collection_create"),
    path("manage/collections/<int:pk>/", views.collection_detail, name="collection_detail"),
    path("manage/documents/", views.document_index, name="document_list"),
    path("manage/documents/<int:pk>/", views.document_detail, name="document_detail"),
    path("manage/documents/<int:pk>/retry/", views.document_retry, name="document_retry"),
    path("manage/documents/<int:pk>/delete/", views.document_delete, name="document_delete"),
    path("manage/documents/<int:pk>/original/", views.document_original, name="document_original"),
    path("manage/index/", views.index_overview, name="index_stats"),
    path("documents/<int:pk>/", views.document_view, name="document_view"),
    path("documents/<int:pk>/download/", views.document_download, name="document_download"),
    path("api/documents/", api.documents, name="api_documents"),
    path("api/documents/<int:pk>/", api.document, name="api_document"),
    path("api/documents/<int:pk>/retry/", api.document_retry, name="api_document_retry"),
    path("api/documents/<int:pk>/move/", api.document_move, name="api_document_move"),
    path("api/search/", api.search, name="api_search"),
]
