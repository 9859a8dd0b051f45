"""PostgreSQL schema migrations for AWS CDK applications: one engine, thin adapters (CLI, Lambda)."""

__version__ = "0.1.0"  # what --version says when the distribution is not installed
