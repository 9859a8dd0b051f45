"""The invocations the CDK Provider framework makes of the user handlers, field for field.

CloudFormation sends the framework's onEvent function a custom-resource request; the framework passes
it unchanged (ResourceProperties defaulted to ``{}``) to the user's on_event. With an isComplete handler
configured, the framework then builds ``{**request, **on_event_result, PhysicalResourceId: ...}`` and its
waiter state machine invokes the user's is_complete with that same object on every poll
(aws-cdk-lib custom-resources/lib/provider-framework/runtime/framework.js, ``createResponseEvent``).
CloudFormation passes every resource property as a string, and repeats ServiceToken among them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

REGION = "eu-central-1"
ACCOUNT = "123456789012"
SERVICE_TOKEN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:DbStack-ProviderframeworkonEvent-Vx8QhN2sKp1L"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/DbStack/5b3c9f70-1f6a-11ef-8f2e-0a9d3c1e2b47"
LOGICAL_RESOURCE_ID = "MigrationsRunMigrationsF1E2D3C4"
RESOURCE_TYPE = "Custom::DbMigrations"


def _request(request_type: str, properties: dict[str, str]) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "RequestType": request_type,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": (
            f"https://cloudformation-custom-resource-response-{REGION.replace('-', '')}.s3.{REGION}.amazonaws.com/"
            f"arn%3Aaws%3Acloudformation%3A{REGION}%3A{ACCOUNT}%3Astack/DbStack/{request_id}"
            "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=7200&X-Amz-Signature=0f3a"
        ),
        "StackId": STACK_ID,
        "RequestId": request_id,
        "LogicalResourceId": LOGICAL_RESOURCE_ID,
        "ResourceType": RESOURCE_TYPE,
        "ResourceProperties": {"ServiceToken": SERVICE_TOKEN, **properties},
    }


def create(properties: dict[str, str] | None = None) -> dict[str, Any]:
    return _request("Create", properties or {})


def update(
    physical_resource_id: str, properties: dict[str, str] | None = None, old_properties: dict[str, str] | None = None
) -> dict[str, Any]:
    event = _request("Update", properties or {})
    event["PhysicalResourceId"] = physical_resource_id
    event["OldResourceProperties"] = {"ServiceToken": SERVICE_TOKEN, **(old_properties or {})}
    return event


def delete(physical_resource_id: str, properties: dict[str, str] | None = None) -> dict[str, Any]:
    event = _request("Delete", properties or {})
    event["PhysicalResourceId"] = physical_resource_id
    return event


def is_complete_event(request: dict[str, Any], on_event_result: dict[str, Any] | None) -> dict[str, Any]:
    """What is_complete receives: the request, on_event's result merged in, the physical id settled."""
    result = on_event_result or {}
    default_id = request["RequestId"] if request["RequestType"] == "Create" else request["PhysicalResourceId"]
    return {**request, **result, "PhysicalResourceId": result.get("PhysicalResourceId") or default_id}


class LambdaContext:
    """The Lambda context as the handlers use it: remaining time runs down with the clock."""

    function_name = "DbStack-MigrationsHandler-3kd92JfL0a1B"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"

    def __init__(self, remaining_seconds: float = 900.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._ends_at = time.monotonic() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends_at - time.monotonic()) * 1000), 0)


# The JavaScript frames Node.js adds to the framework's Error (Error.stackTraceLimit is 10); cfn-response.js sends
# ``e.stack`` as the Reason. Ten long frames: more than the framework's real four, to budget for the worst.
FRAMEWORK_FRAMES = tuple(
    f"    at async Runtime.handler (/var/task/node_modules/aws-cdk-lib/custom-resources/lib/provider-framework"
    f"/runtime/cfn-response.js:1:{1676 + frame})"
    for frame in range(10)
)


def failure_response(request: dict[str, Any], error_message: str, function_name: str) -> bytes:
    """The body the framework PUTs to CloudFormation when the user function failed with ``error_message``.

    framework.js ``invokeUserFunction``: ``new Error([errorMessage, "", "Logs: /aws/lambda/" + name, ""].join("\\n"))``;
    cfn-response.js ``submitResponse``: ``JSON.stringify({Status, Reason: e.stack, StackId, RequestId,
    PhysicalResourceId, LogicalResourceId})`` (NoEcho and Data undefined, so absent). A failed Create has no
    physical id: the framework sends its CREATE_FAILED marker.
    """
    message = "\n".join([error_message, "", f"Logs: /aws/lambda/{function_name}", ""])
    body = {
        "Status": "FAILED",
        "Reason": "\n".join([f"Error: {message}", *FRAMEWORK_FRAMES]),
        "StackId": request["StackId"],
        "RequestId": request["RequestId"],
        "PhysicalResourceId": request.get("PhysicalResourceId")
        or "AWSCDK::CustomResourceProviderFramework::CREATE_FAILED",
        "LogicalResourceId": request["LogicalResourceId"],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
