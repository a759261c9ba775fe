"""The Django adapters: settings, checks, admin, backend, commands, tenancy, enqueue, views."""
