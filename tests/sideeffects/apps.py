from django.apps import AppConfig


class SideEffectsConfig(AppConfig):
    name = "tests.sideeffects"
    label = "sideeffects"
