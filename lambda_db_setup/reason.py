"""The failure reason CloudFormation gets, cut to fit: a response over 4,096 bytes is itself refused.

The Provider framework (aws-cdk-lib custom-resources, provider-framework/runtime: ``invokeUserFunction``
in framework.js, ``submitResponse`` in cfn-response.js) sends as Reason the JavaScript ``stack`` of an
error it makes from our message: ``Error: <message>\\n\\nLogs: /aws/lambda/<function>\\n\\n`` and up to ten
``    at ...`` frames, inside a JSON body that also holds StackId, RequestId, LogicalResourceId and
PhysicalResourceId. Newer aws-cdk-lib versions also cut the message at 1,000 characters, which would drop
a cut marker placed later; so the message is kept within `REASON_MAX_BYTES` as JSON writes it (UTF-8,
escapes included), which is never more characters. The full text stays in the run's log line.
"""

from __future__ import annotations

import json

REASON_MAX_BYTES = 1000  # of the ~4,096: the framework's text and the response's other fields take the rest


def json_bytes(text: str) -> int:
    """The bytes ``text`` takes inside a JSON string (JSON.stringify: UTF-8, quotes and controls escaped)."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def cap(message: str, *, keep: str = "") -> str:
    """``message`` if it fits; else its start, a marker of the cut, and ``keep`` when the start lacks it.

    ``keep`` is what the reason must show even when cut there, such as a SQLSTATE that comes late.
    """
    if json_bytes(message) <= REASON_MAX_BYTES:
        return message
    tail = _marker(len(message)) + (f" {keep}" if keep else "")
    room = REASON_MAX_BYTES - json_bytes(tail)
    kept = 0
    for character in message:
        room -= json_bytes(character)
        if room < 0:
            break
        kept += 1
    head = message[:kept].rstrip()
    suffix = f" {keep}" if keep and keep not in head else ""
    return f"{head}{_marker(len(message) - len(head))}{suffix}"


def _marker(cut: int) -> str:
    return f" … [cut, {cut:,} more characters: see the log line]"
