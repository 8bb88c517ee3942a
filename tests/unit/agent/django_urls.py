from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path


def user(request, pk):
    return HttpResponse(f"user {pk}")


def stream(request):
    return StreamingHttpResponse(b"x" * 10 for _ in range(3))


def boom(request):
    raise RuntimeError("kaput")


urlpatterns = [
    path("users/<int:pk>/", user, name="user"),
    path("stream/", stream),
    path("boom/", boom),
]
