"""The example's own tests, run by `python manage.py test` (shipyard's test gate too)."""

import tempfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, override_settings

from notes.models import Note


class NotesTests(TestCase):
    def test_a_posted_note_is_listed(self) -> None:
        response = self.client.post("/notes/", {"text": "first"})
        self.assertEqual(response.status_code, 302)
        self.assertContains(self.client.get("/"), "<li>first</li>")
        self.assertEqual(self.client.get("/notes/count").content, b"1")

    def test_an_empty_note_is_refused(self) -> None:
        self.assertEqual(self.client.post("/notes/", {"text": " "}).status_code, 400)
        self.assertEqual(Note.objects.count(), 0)

    def test_an_upload_is_kept_in_media_root(self) -> None:
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media, MEDIA_URL="/media/"):
            upload = SimpleUploadedFile("hello.txt", b"hello")
            response = self.client.post("/upload/", {"file": upload})
            self.assertEqual(response.status_code, 201)
            self.assertEqual(response.content, b"/media/uploads/hello.txt")

    def test_health(self) -> None:
        self.assertEqual(self.client.get("/health").content, b"ok")
