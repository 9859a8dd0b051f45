"""PostgreSQL schema migrations for AWS CDK applications: one engine, thin adapters (CLI, Lambda)."""
