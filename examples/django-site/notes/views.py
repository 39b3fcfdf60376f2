"""The notes: a list with a form to add one, an upload form, and cheap endpoints to poll."""

from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from notes.models import Note

GREETING = "hello from django"  # the line benchmarks edit to test redeploys


def index(request: HttpRequest) -> HttpResponse:
    notes = Note.objects.order_by("-created")[:20]
    return render(request, "notes/index.html", {"greeting": GREETING, "notes": notes})


@require_POST
def add_note(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("text", "").strip()
    if not text:
        return HttpResponseBadRequest("a note needs text")
    Note.objects.create(text=text)
    return redirect("index")


@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    """Keep the uploaded file under MEDIA_ROOT; answer the URL it is served at."""
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return HttpResponseBadRequest("no file")
    name = default_storage.save(f"uploads/{uploaded.name}", uploaded)
    return HttpResponse(default_storage.url(name), content_type="text/plain", status=201)


def count(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(Note.objects.count()), content_type="text/plain")


def health(request: HttpRequest) -> HttpResponse:
    Note.objects.exists()  # the database answers
    return HttpResponse("ok", content_type="text/plain")


def version(request: HttpRequest) -> HttpResponse:
    return HttpResponse(GREETING, content_type="text/plain")
