"""The CDK side of lambda_db_setup: the ``DatabaseMigrations`` construct (needs the ``cdk`` extra).

Never part of the Lambda's asset: the bundle copies the package without this subpackage.
"""

from lambda_db_setup.cdk.appusers import AppUser
from lambda_db_setup.cdk.construct import ALWAYS, CONTENT_HASH, TRIGGERS, DatabaseMigrations
from lambda_db_setup.rolespec import DDL, READ, WRITE, AppGroup

__all__ = ["ALWAYS", "CONTENT_HASH", "DDL", "READ", "TRIGGERS", "WRITE", "AppGroup", "AppUser", "DatabaseMigrations"]
