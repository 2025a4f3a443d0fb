"""Two writing views: the maintenance middleware must stop both while a restore runs."""

from __future__ import annotations

from datetime import date

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tests.django_fixture.clinic.models import Patient


@csrf_exempt
def create_patient(request: HttpRequest) -> JsonResponse:
    patient = Patient.objects.create(name="Desde la API", birth_date=date(1990, 1, 1))
    return JsonResponse({"id": patient.pk}, status=201)


@csrf_exempt
def create_patient_page(request: HttpRequest) -> HttpResponse:
    patient = Patient.objects.create(name="Desde la web", birth_date=date(1990, 1, 1))
    return HttpResponse(f"<p>Paciente {patient.pk}</p>", status=201)
