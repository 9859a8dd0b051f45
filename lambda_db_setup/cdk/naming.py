"""Physical names of the construct's functions and log groups, derived from the construct's path.

Several ``DatabaseMigrations`` in one stack, or in several stacks of one app, must never name a function or a
log group alike (CloudFormation refuses the second), and a name must stay within Lambda's 64 characters.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Aws, Fn, Names
from constructs import Construct

FUNCTION_NAME_MAX = 64  # Lambda's limit on a function name
STACK_ID_PIECE = 8  # hex digits of the stack's UUID that end every name
LOG_GROUP_PREFIX = "/aws/lambda/"  # where Lambda logs, and what a failure's Reason names


def function_names(scope: Construct, function_ids: Iterable[str]) -> dict[str, str]:
    """Function id -> ``<path name>-<function id>-<8 hex digits of the stack's id>``, each at most 64 characters.

    ``<path name>`` is CDK's unique name of ``scope``'s path (stack name, construct ids, a hash of the whole
    path), so it differs between any two constructs of an app. The stack id's piece gives a stack created
    again new names, so its log groups never meet the ones an earlier stack of that name retained.
    """
    ids = list(function_ids)
    room = FUNCTION_NAME_MAX - STACK_ID_PIECE - max(len(f"-{function_id}-") for function_id in ids)
    path_name = Names.unique_resource_name(scope, max_length=room, separator="-")
    stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
    stack_piece = Fn.select(0, Fn.split("-", stack_uuid))
    return {function_id: Fn.join("", [f"{path_name}-{function_id}-", stack_piece]) for function_id in ids}


def log_group_name(function_name: str) -> str:
    """The group Lambda writes a function's logs to, which the Provider framework names in a failure's Reason."""
    return f"{LOG_GROUP_PREFIX}{function_name}"
