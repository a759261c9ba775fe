"""Example from the FairQueue README ("Basic Usage with @task Decorator"), with only the import changed to fairque_django."""

from fairque_django import task, TaskQueue, FairQueueConfig, Priority, xcom_push, xcom_pull

# Define tasks using the @task decorator
@task(priority=Priority.HIGH, max_retries=3)
def process_order(order_id: int, customer_id: str) -> dict:
    """Process customer order."""
    print(f"Processing order {order_id} for customer {customer_id}")
    
    # Simulate order processing
    result = {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": "processed",
        "total": 99.99
    }
    
    # Store result in XCom for other tasks
    xcom_push("order_result", result)
    return result

@task(priority=Priority.NORMAL)
def send_confirmation(order_id: int):
    """Send order confirmation email."""
    # Pull order result from XCom
    order_data = xcom_pull("order_result")
    print(f"Sending confirmation for order {order_id}: {order_data}")

# Create configuration
config = FairQueueConfig.create_default(
    worker_id="worker-001",
    assigned_users=["user:1", "user:2", "user:3"],
    steal_targets=["user:4", "user:5"]
)

# Create and execute tasks
with TaskQueue(config) as queue:
    # Create tasks by calling decorated functions
    order_id = 12345
    customer_id = "customer@example.com"
    order_task = process_order(order_id, customer_id)
    confirmation_task = send_confirmation(order_id)
    
    # Execute immediately or push to queue
    result = order_task()  # Execute directly
    print(f"Order result: {result}")
    
    # Push to queue for worker processing
    queue.push(confirmation_task, user_id="user:1")
    
    # Get queue statistics
    stats = queue.get_stats()
    print(f"Active tasks: {stats.get('tasks_active', 0)}")
