"""Example from the FairQueue README ("Configuration"), with only the import changed to fairque_django."""

from fairque_django import FairQueueConfig

# Multi-worker configuration
config = FairQueueConfig.from_yaml("fairque_config.yaml")

# Single worker configuration (legacy)
config = FairQueueConfig.create_default(
    worker_id="worker-001",
    assigned_users=["user:1", "user:2"],
    steal_targets=["user:3", "user:4"]
)
