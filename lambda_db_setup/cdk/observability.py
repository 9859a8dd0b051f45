"""Logs Insights saved queries and a CloudWatch dashboard over one DatabaseMigrations construct's log groups.

They read the handler's JSON lines (``outcome``, ``migration``, ``duration_ms``, ``correlation_id`` = the
CloudFormation request): what ``lambda-db-setup logs`` shows, for the console. The widgets read the log
groups rather than the EMF metrics, whose one dimension (``service``) every construct in the account
shares. Names come from the construct's path, so several constructs in a stack, or stacks in an account,
do not collide.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Names
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

DASHBOARD_NAME_MAX = 255  # CloudWatch's limit; the name allows only A-Z a-z 0-9 - _
QUERY_NAME_MAX = 255  # CloudWatch Logs' limit on a query definition's name
QUERY_FOLDER = "lambda-db-setup"  # the console shows "<folder>/<name>" query names as folders

# Saved query name -> its Logs Insights statements (fields, filter, stats, sort, limit).
QUERIES = {
    "failed runs": logs.QueryString(
        fields=[
            "@timestamp",
            "correlation_id",
            "request_type",
            "stage",
            "migration",
            "sqlstate",
            "pg_message",
            "reason",
        ],
        filter_statements=['outcome = "failed"'],
        sort="@timestamp desc",
        limit=100,
    ),
    "slowest migrations": logs.QueryString(
        fields=["@timestamp", "migration", "duration_ms", "group_size", "correlation_id"],
        filter_statements=['outcome = "applied"'],
        sort="duration_ms desc",
        limit=50,
    ),
    "applied by each deploy": logs.QueryString(
        filter_statements=['outcome = "applied"'],
        stats_statements=[
            "count(*) as applied, sum(duration_ms) as migrating_ms, earliest(migration) as first,"
            " latest(migration) as last, min(@timestamp) as started by correlation_id, request_type"
        ],
        sort="started desc",
        limit=100,
    ),
}
WIDGETS = {  # title -> Logs Insights query, charted per day
    "Runs": "filter ispresent(correlation_id) | stats count_distinct(correlation_id) as runs by bin(1d)",
    "Failures": 'filter outcome = "failed" | stats count(*) as failures by bin(1d)',
    "Migrations applied": 'filter outcome = "applied" | stats count(*) as applied by bin(1d)',
}
RUN_DURATION = (  # seconds from a run's first line (on_event) to its last (is_complete)
    "filter ispresent(correlation_id)"
    "\n| stats (max(@timestamp) - min(@timestamp)) / 1000 as seconds, min(@timestamp) as started by correlation_id"
    "\n| sort started desc\n| limit 50"
)


class MigrationObservability(Construct):
    """The saved queries (``queries``, by name) and the dashboard (``dashboard``) of one construct's runs."""

    def __init__(self, scope: Construct, construct_id: str, *, log_groups: Sequence[logs.ILogGroup]) -> None:
        super().__init__(scope, construct_id)
        name = _path_name(self, DASHBOARD_NAME_MAX)
        folder = f"{QUERY_FOLDER}/{_path_name(self, QUERY_NAME_MAX - len(QUERY_FOLDER) - 2 - max(map(len, QUERIES)))}"
        self.queries = {
            title: logs.QueryDefinition(
                self,
                f"Query{index}",
                query_definition_name=f"{folder}/{title}",
                query_string=query,
                log_groups=list(log_groups),
            )
            for index, (title, query) in enumerate(QUERIES.items())
        }
        names = [group.log_group_name for group in log_groups]
        charts = [
            cloudwatch.LogQueryWidget(
                title=title,
                log_group_names=names,
                query_string=query,
                view=cloudwatch.LogQueryVisualizationType.BAR,
                width=8,
            )
            for title, query in WIDGETS.items()
        ]
        durations = cloudwatch.LogQueryWidget(
            title="Run duration (s)", log_group_names=names, query_string=RUN_DURATION, width=12
        )
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=name, widgets=[charts, [durations]])

    def add_alarm(self, alarm: cloudwatch.IAlarm) -> None:
        """Show ``alarm``'s state on the dashboard (the failed-run alarm lives beside the construct, in the app)."""
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(alarms=[alarm], title="Failed-run alarm", width=12))


def _path_name(scope: Construct, max_length: int) -> str:
    """A name unique to ``scope``'s path in the app (the stack's name first), cut to ``max_length``, hash kept."""
    return Names.unique_resource_name(scope, max_length=max_length, separator="-", allowed_special_characters="-_")
