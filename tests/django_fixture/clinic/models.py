"""A clinic's data: foreign keys, many-to-many, a generic relation, check constraints,
identity columns (Django's AutoField on PostgreSQL), a partial index and, in the migrations,
a trigger and a reporting role's grant."""

from __future__ import annotations

from datetime import date

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q


class Tag(models.Model):
    name = models.CharField(max_length=40, unique=True)


class Note(models.Model):
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.TextField()


class Patient(models.Model):
    name = models.CharField(max_length=120)
    # Filled by the trigger (migration 0002): lower(name), for searching.
    name_search = models.CharField(max_length=120, blank=True, default="")
    birth_date = models.DateField()
    tags = models.ManyToManyField(Tag, blank=True)
    notes = GenericRelation(Note)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(birth_date__gte=date(1900, 1, 1)), name="patient_born_after_1900"
            )
        ]


class Appointment(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="appointments")
    at = models.DateTimeField()
    status = models.CharField(max_length=12, default="scheduled")

    class Meta:
        indexes = [
            models.Index(
                fields=["at"], condition=Q(status="scheduled"), name="appointment_scheduled_at"
            )
        ]


class Invoice(models.Model):
    appointment = models.ForeignKey(Appointment, on_delete=models.PROTECT)
    amount_cents = models.IntegerField()
    paid = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gte=0), name="invoice_not_negative")
        ]
