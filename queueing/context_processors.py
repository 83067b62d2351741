from django.conf import settings
from django.http import HttpRequest


def links(request: HttpRequest) -> dict:
    """URLs the admin header links to (Flower runs as its own server)."""
    return {"flower_url": settings.FLOWER_URL}
