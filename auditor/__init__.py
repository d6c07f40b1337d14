"""Audit the spend and per-model budgets of a LiteLLM proxy straight from its database."""

__version__ = "0.1.0"
