"""The fixture host's few views: one API endpoint and one page that write to the clinic."""

from __future__ import annotations

from django.urls import path

from tests.django_fixture.clinic import views

urlpatterns = [
    path("api/patients/", views.create_patient),
    path("patients/", views.create_patient_page),
]
