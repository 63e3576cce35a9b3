"""Clara pipeline definitions: loading with line numbers, validation, local runs and deployment."""
