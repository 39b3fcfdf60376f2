from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("notes/", views.add_note, name="add-note"),
    path("notes/count", views.count),
    path("upload/", views.upload, name="upload"),
    path("health", views.health),
    path("version", views.version),
]
