"""AWS CDK infrastructure: one construct per concern (network, database, migrations) composed by one stack."""
