from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("compliance/", views.log_list, name="log_list"),
    path("compliance/queue/", views.queue, name="queue"),
    path("compliance/entries/<int:pk>/", views.entry_detail, name="entry_detail"),
    path("compliance/entries/<int:pk>/review/", views.entry_review, name="entry_review"),
    path("compliance/exports/", views.export_list, name="export_list"),
    path("compliance/exports/new/", views.export_create, name="export_create"),
    path("compliance/exports/<str:token>/", views.export_detail, name="export_detail"),
    path("compliance/exports/<str:token>/status/", views.export_status, name="export_status"),
    path("compliance/exports/<str:token>/download/", views.export_download, name="export_download"),
    path("compliance/exports/<str:token>/manifest/", views.export_manifest, name="export_manifest"),
    path("compliance/integrity/", views.integrity, name="integrity"),
    path("compliance/integrity/verify/", views.integrity_verify, name="integrity_verify"),
    path("compliance/dashboard/", views.dashboard, name="dashboard"),
    path("compliance/audit/", views.audit, name="audit"),
]
