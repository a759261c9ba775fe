from __future__ import annotations

from django.contrib import admin

from .models import Order, Organization


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "fairque_user_id"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["pk", "organization", "item", "quantity", "status", "created_at"]
    list_filter = ["status", "organization"]
