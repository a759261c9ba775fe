"""Example from the FairQueue README ("XCom (Cross Communication) Usage"), with only the import changed to fairque_django."""

from fairque_django import task, xcom_task, xcom_push, xcom_pull

@xcom_task("data_processing")
def extract_data(source: str) -> dict:
    """Extract data and automatically store in XCom."""
    data = {"source": source, "records": 1000}
    return data  # Automatically stored in XCom with task key

@task()
def transform_data():
    """Transform data using XCom."""
    # Pull data from previous task
    raw_data = xcom_pull("data_processing")
    transformed = {
        "processed_records": raw_data["records"] * 2,
        "source": raw_data["source"]
    }
    # Store transformed data
    xcom_push("transformed_data", transformed)
    return transformed

@task()
def load_data():
    """Load transformed data."""
    data = xcom_pull("transformed_data")
    print(f"Loading {data['processed_records']} records from {data['source']}")
