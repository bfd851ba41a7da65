from django.urls import path

from assistant import views

app_name = "assistant"

urlpatterns = [
    path("chat/", views.chat, name="chat"),
    path("chat/<int:pk>/", views.chat, name="conversation"),
    path("chat/<int:pk>/rename/", views.conversation_rename, name="conversation_rename"),
    path("chat/<int:pk>/delete/", views.conversation_delete, name="conversation_delete"),
    path("chat/answers/<int:pk>/", views.answer, name="answer"),
    path("chat/answers/recover/", views.answer_recover, name="answer_recover"),
    path("chat/answers/<int:pk>/feedback/", views.message_feedback, name="feedback"),
]
