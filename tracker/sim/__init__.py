"""Simulated visitors: drive the product end to end without a browser."""
