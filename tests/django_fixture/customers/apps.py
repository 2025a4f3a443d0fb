from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "tests.django_fixture.customers"
    label = "customers"
