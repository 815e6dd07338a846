"""A CloudWatch dashboard for the deployment: executions and training jobs by status, spend per run, Lambda errors
and the GPU utilization of running jobs.

The job figures come from Record's EMF metrics (lambdas/run_metrics.py: the same names and dimension sets) and
from the instance metrics SageMaker publishes per host in `/aws/sagemaker/TrainingJobs`. Metrics whose dimension
values are only known at run time (run ids, statuses, job hosts) are graphed with SEARCH expressions, which pick up
new runs and jobs as they report, filtered to this deployment's `Deployment` dimension or job-name prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas import job_resources, run_metrics

WIDGET_WIDTH = 12  # two widgets per row (the grid is 24 wide)
WIDGET_HEIGHT = 6
JOB_PERIOD = Duration.hours(1)  # jobs end a few times an hour at most: hourly sums read as counts
SPEND_PERIOD = Duration.days(1)  # a run's spend is the sum over its jobs, which end within a day of each other


def search(namespace: str, dimensions: tuple[str, ...], terms: str, statistic: str, period: Duration) -> str:
    """A CloudWatch SEARCH expression over the metrics with exactly `dimensions` in `namespace`."""
    schema = ",".join(f'"{name}"' for name in (namespace, *dimensions))
    return f"SEARCH('{{{schema}}} {terms}', '{statistic}', {int(period.to_seconds())})"


def jobs_by_status_expression(deployment: str) -> str:
    """Jobs Record wrote, per final status, per hour."""
    terms = f'MetricName="{run_metrics.JOBS_RECORDED}" {run_metrics.DEPLOYMENT}="{deployment}"'
    return search(run_metrics.NAMESPACE, (run_metrics.DEPLOYMENT, run_metrics.STATUS), terms, "Sum", JOB_PERIOD)


def spend_per_run_expression(deployment: str) -> str:
    """Each run's recorded spend (the sum of its jobs' cost), per day."""
    terms = f'MetricName="{run_metrics.JOB_COST}" {run_metrics.DEPLOYMENT}="{deployment}"'
    return search(run_metrics.NAMESPACE, (run_metrics.DEPLOYMENT, run_metrics.RUN_ID), terms, "Sum", SPEND_PERIOD)


def gpu_utilization_expression(job_name_prefix: str) -> str:
    """GPUUtilization of every host of this deployment's jobs (`Host = <job name>/algo-<n>`), 1-minute averages.

    A SEARCH term cannot anchor a prefix; the designator `Host=<prefix>`, unquoted, is a partial match on the
    prefix's tokens, and the prefix ends in a hash of the stack (stacks/config.py), so other deployments' and
    projects' jobs do not match it. CloudWatch documents designators as `Name=value` (CloudWatch User Guide,
    "CloudWatch search expression syntax": "The SearchTerm can include one or more designators, such as
    MetricName="; quoted values match exactly, unquoted ones partially); `Host:` is not a documented form."""
    terms = f'MetricName="{job_resources.GPU_UTILIZATION}" Host={job_name_prefix}'
    return search(
        job_resources.TRAINING_JOB_NAMESPACE,
        ("Host",),
        terms,
        "Average",
        Duration.seconds(job_resources.PERIOD_SECONDS),
    )


class Dashboard(Construct):
    """One dashboard per deployment, named after its resource prefix."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        state_machine: sfn.IStateMachine,
        functions: Mapping[str, lambda_.IFunction],
        job_name_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)

        def graph(title: str, metrics: list[cloudwatch.IMetric], **kwargs: Any) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=metrics, width=WIDGET_WIDTH, height=WIDGET_HEIGHT, **kwargs)

        hourly_sum: dict[str, Any] = {"statistic": cloudwatch.Stats.SUM, "period": JOB_PERIOD}
        executions = graph(
            "Executions by status",
            [
                state_machine.metric_started(label="Started", **hourly_sum),
                state_machine.metric_succeeded(label="Succeeded", **hourly_sum),
                state_machine.metric_failed(label="Failed", **hourly_sum),
                state_machine.metric_timed_out(label="Timed out", **hourly_sum),
                state_machine.metric_aborted(label="Aborted", **hourly_sum),
            ],
            stacked=True,
        )
        jobs = graph(
            "Training jobs recorded, by final status",
            [
                cloudwatch.MathExpression(
                    expression=jobs_by_status_expression(job_name_prefix), label="", period=JOB_PERIOD
                )
            ],
            stacked=True,
        )
        spend = graph(
            "Spend per run (USD, recorded jobs)",
            [
                cloudwatch.MathExpression(
                    expression=spend_per_run_expression(job_name_prefix), label="", period=SPEND_PERIOD
                )
            ],
            stacked=True,
        )
        total_spend = cloudwatch.SingleValueWidget(
            title="Spend in the selected period (USD)",
            metrics=[
                cloudwatch.Metric(
                    namespace=run_metrics.NAMESPACE,
                    metric_name=run_metrics.JOB_COST,
                    dimensions_map={run_metrics.DEPLOYMENT: job_name_prefix},
                    statistic=cloudwatch.Stats.SUM,
                    label="Recorded spend",
                )
            ],
            set_period_to_time_range=True,
            width=WIDGET_WIDTH,
            height=WIDGET_HEIGHT,
        )
        errors = graph(
            "Lambda errors",
            [
                function.metric_errors(label=name, statistic=cloudwatch.Stats.SUM, period=Duration.minutes(5))
                for name, function in functions.items()
            ],
        )
        gpus = graph(
            "GPU utilization of running jobs (% per host, summed over its GPUs)",
            [
                cloudwatch.MathExpression(
                    expression=gpu_utilization_expression(job_name_prefix),
                    label="",
                    period=Duration.seconds(job_resources.PERIOD_SECONDS),
                )
            ],
        )
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            widgets=[[executions, jobs], [spend, total_spend], [errors, gpus]],
        )
