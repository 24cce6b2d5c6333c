"""MLflow tracking: what every run records beside Lightning's own metric logging."""
