"""lambda_sandbox."""
