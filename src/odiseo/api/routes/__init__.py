"""Thin route handlers: validate, call the service, map errors to HTTP."""
