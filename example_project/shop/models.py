"""Organisations are the tenants; each order belongs to one."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Organization(models.Model):
    """A customer organisation: one fairque tenant, ``org:<pk>``."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def fairque_user_id(self) -> str | None:
        """The fairque user id of this tenant (read by the default tenant resolver)."""
        return f"org:{self.pk}" if self.pk is not None else None


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        PROCESSED = "processed", "Processed"
        CONFIRMED = "confirmed", "Confirmed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="orders")
    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("9.99"))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    confirmation = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.organization})"

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity
