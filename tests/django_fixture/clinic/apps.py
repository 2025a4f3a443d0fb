from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "tests.django_fixture.clinic"
    label = "clinic"
