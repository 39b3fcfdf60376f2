"""The app spec: its pydantic models and their documentation. Pure: no I/O."""
