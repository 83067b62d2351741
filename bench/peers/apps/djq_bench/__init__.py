"""django-q2 peer: a minimal Django project with the ORM broker."""
