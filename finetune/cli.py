"""`finetune`: run, follow, stop and read fine-tuning studies on the deployed stack from a terminal or from CI.

\b
    finetune estimate --matrix study                   # offline: the study's maximum cost, each job's fit
    finetune start --matrix study --wait               # validate locally, start, follow it to the end
    finetune report <run id, execution name or ARN>   # the ranked report from S3 and the ledger
    finetune logs <training job> --follow              # the job's CloudWatch logs from every host

`validate` and `estimate` never call AWS. Every other command finds the stack by name (cdk.json's stack name unless
--stack) with CloudFormation DescribeStacks in --region (cdk.json's region unless given), with --profile's
credentials. Exit status: 0 success, 1 an AWS or run failure, 2 invalid input (nothing was started).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import boto3
import typer
from botocore.config import Config as ClientConfig
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from finetune import compare as comparison
from finetune import hub_config, hub_data, live, quota_requests
from finetune import logs as job_logs
from finetune.deployment import (
    OutputsResolver,
    StackNotFound,
    StackOutputs,
    deployment_config,
    resolve_from_cloudformation,
)
from finetune.tables import terminal_table
from lambdas import catalog, cleanup, ledger, memory, naming, plan, report
from lambdas import estimate as estimate_model
from lambdas.errors import BudgetExceeded, InfeasibleJob, InvalidExecutionInput
from lambdas.job_spec import JobSpec
from lambdas.report import columns as report_columns
from stacks.config import Config
from training_code.data import DataError

EXIT_FAILED = 1
EXIT_INVALID = 2
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MINI_DATASET = EXAMPLES / "datasets" / "banking77-mini"
# Stand-in bucket for offline estimates: build_jobs puts it in URIs only, and the estimate shows none of them.
OFFLINE_BUCKET = "offline-estimate"
ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None)
# soft_wrap: ARNs, console URLs and error causes stay on one line (copyable); tables still fit the terminal.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Matrix(StrEnum):
    """Named experiment matrices: example inputs with `experiments` omitted (MATRIX_INPUTS)."""

    STUDY = "study"


MATRIX_INPUTS = {Matrix.STUDY: EXAMPLES / "study-matrix.json"}


class OutputFormat(StrEnum):
    """How `finetune estimate` prints: tables for people, JSON for CI."""

    TABLE = "table"
    JSON = "json"


class ReportFormat(StrEnum):
    """How `finetune report` prints."""

    TABLE = "table"
    MD = "md"
    JSON = "json"


@dataclass
class Session:
    """Where the CLI acts: AWS session options, the deployment's settings, and how stack outputs are found.

    Tests pass one as Click's `obj` with `resolve_outputs` answering from an emulated account."""

    region: str | None = None
    profile: str | None = None
    stack_name: str | None = None
    resolve_outputs: OutputsResolver = resolve_from_cloudformation
    poll_seconds: float = 15.0
    config: Config = field(default_factory=deployment_config)
    # `datasets.load_dataset` unless a test injects a stand-in (no Hub access in tests).
    load_dataset: hub_data.LoadDataset | None = None

    @functools.cached_property
    def boto(self) -> boto3.Session:
        """The boto3 session; the stack lives in cdk.json's region unless --region says otherwise."""
        return boto3.Session(profile_name=self.profile, region_name=self.region or self.config.region)

    def client(self, service: str, **options: Any) -> Any:
        """A client of the session (`options`: boto3 client arguments, e.g. a retry config)."""
        return self.boto.client(service, **options)

    @functools.cached_property
    def outputs(self) -> StackOutputs:
        """The deployed stack's outputs (DescribeStacks by default); `StackNotFound` says which stack, where."""
        name = self.stack_name or self.config.stack_name
        try:
            return self.resolve_outputs(self.boto, name)
        except StackNotFound as exc:
            raise StackNotFound(
                f"stack {name} is not deployed in {self.boto.region_name} ({exc}): deploy it (`make deploy`) or "
                "pass --stack / --region"
            ) from None


@app.callback()
def main(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option(help="AWS region of the stack (default: cdk.json's)")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS named profile, as for the AWS CLI")] = None,
    stack: Annotated[str | None, typer.Option(help="stack name (default: cdk.json's, e.g. Finetune)")] = None,
) -> None:
    """Operate the fine-tuning stack."""
    session = ctx.obj if isinstance(ctx.obj, Session) else Session()
    session.region = region or session.region
    session.profile = profile or session.profile
    session.stack_name = stack or session.stack_name
    ctx.obj = session


F = TypeVar("F", bound=Callable[..., Any])


def translated_errors(command: F) -> F:
    """Turn the errors users hit into one readable line and an exit status, instead of a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InvalidExecutionInput as exc:
            err.print("invalid input (nothing was started):")
            for path, why in exc.problems:
                err.print(f"  {path}: {why}")
            raise typer.Exit(EXIT_INVALID) from None
        except (InfeasibleJob, BudgetExceeded) as exc:
            err.print(f"{type(exc).__name__} (nothing was started): {exc.message}")
            raise typer.Exit(EXIT_INVALID) from None
        except NoCredentialsError:
            err.print("no AWS credentials: run `aws configure` or `aws sso login`, or pass --profile")
            raise typer.Exit(EXIT_FAILED) from None
        except NoRegionError:
            err.print("no AWS region: pass --region")
            raise typer.Exit(EXIT_FAILED) from None
        except StackNotFound as exc:
            err.print(str(exc))
            raise typer.Exit(EXIT_FAILED) from None
        except ClientError as exc:
            error = exc.response["Error"]
            err.print(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}")
            raise typer.Exit(EXIT_FAILED) from None
        except DataError as exc:
            err.print(f"invalid data (nothing was uploaded): {exc}")
            raise typer.Exit(EXIT_INVALID) from None

    return run  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------------
# Execution input
# ---------------------------------------------------------------------------------------------------------------------
def execution_input(
    file: Path | None,
    matrix: Matrix | None,
    model: str | None = None,
    approach: str | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """The execution input from a file, the named matrix, or one --model/--approach experiment."""
    sources = [s for s in (file, matrix, model or approach) if s]
    if len(sources) != 1:
        raise typer.BadParameter("give exactly one of FILE/--input, --matrix study, or --model with --approach")
    if file is not None:
        try:
            doc = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidExecutionInput([(str(file), f"cannot read it as JSON: {exc}")]) from None
    elif matrix is not None:
        # The named matrix is its example input: experiments omitted (Plan expands the study), and the budget its
        # maximum needs, so the study starts with no flags while a hand-written input keeps the deployment's guard.
        doc = json.loads(MATRIX_INPUTS[matrix].read_text())
    else:
        if not (model and approach):
            raise typer.BadParameter("--model and --approach go together")
        doc = {"experiments": [{"model": model, "approach": approach}]}
    if budget is not None and isinstance(doc, dict):
        doc["budget_usd"] = budget
    return doc


@dataclass(frozen=True)
class Estimate:
    """The validated input, its job specs at catalog prices, and the planner's fit of each job."""

    doc: dict[str, Any]
    jobs: list[JobSpec]
    fits: list[memory.FitEstimate]
    budget_usd: float

    @property
    def total_usd(self) -> float:
        """Total estimated maximum cost."""
        return sum(job["estimated_max_cost_usd"] for job in self.jobs)

    @property
    def expected_usd(self) -> float:
        """Total expected cost (lambdas/estimate.py: at the job's pricing, spot expected for spot jobs)."""
        return sum(job["estimated_cost_usd"] for job in self.jobs)

    def as_json(self) -> dict[str, Any]:
        """The machine-readable estimate (`finetune estimate --format json`): per job its plan, time parts and dollars;
        the totals and the budget."""
        jobs = [_job_json(job, fit) for job, fit in zip(self.jobs, self.fits, strict=True)]
        return {
            "jobs": jobs,
            **{key: round(sum(job[key] for job in jobs), 4) for key in ("expected_usd", "low_usd", "high_usd")},
            "max_usd": round(self.total_usd, 2),
            "budget_usd": self.budget_usd,
        }


def _job_json(job: JobSpec, fit: memory.FitEstimate) -> dict[str, Any]:
    shape = estimate_model.shape_of(job, model=fit.workload.model, rows=job["estimated_train_rows"])
    return {
        "model": job["model_key"],
        "approach": job["approach"],
        "instance_type": job["instance_type"],
        "instance_count": job["instance_count"],
        "gpus_per_instance": job["gpus_per_instance"],
        "strategy": job["strategy"],
        "parameters": fit.workload.model.parameters,
        "active_parameters": fit.workload.model.active_parameters,
        "sized_from": job["architecture_source"],
        "epochs": job["epochs"],
        "train_rows": job["estimated_train_rows"],
        "tokens_per_example": estimate_model.tokens_per_example(
            job["prompt_style"], job["max_seq_length"], job.get("task")
        ),
        "global_batch_size": shape.batch_size * shape.gradient_accumulation_steps * shape.data_parallel,
        "seconds": job["estimated_seconds"],
        "expected_usd": job["estimated_cost_usd"],
        "low_usd": job["estimated_low_cost_usd"],
        "high_usd": job["estimated_high_cost_usd"],
        "max_usd": job["estimated_max_cost_usd"],
    }


def estimate_input(doc: Any, config: Config, run_id: str = "estimate") -> Estimate:
    """Plan's own checks and job specs, offline: schema, catalog, memory fit, catalog prices (no AWS call)."""
    validated, experiments = plan.validate_execution_input(doc, default_max_runtime_hours=config.max_runtime_hours)
    jobs = plan.build_jobs(
        validated,
        experiments,
        run_id=run_id,
        bucket=OFFLINE_BUCKET,
        job_name_prefix=config.job_name_prefix,
        price_of=plan.catalog_price,
    )
    fits = [plan.plan_fit(catalog.model_of_job(values), values) for values in experiments]
    return Estimate(validated, jobs, fits, float(validated.get("budget_usd", config.default_budget_usd)))


def sized_input(doc: Any, model_config: list[str] | None) -> Any:
    """The input with each Hub model's `architecture` from its config.json (finetune/hub_config.py): what
    validate, estimate and start check and send."""
    configs = hub_config.parse_model_configs(model_config or [], doc)
    return hub_config.with_architectures(doc, configs, warn=lambda message: err.print(f"warning: {message}"))


def _gib(value: float) -> str:
    return f"{value / memory.GIB:.1f}"


def print_whole(table: Table) -> None:
    """Print a table; when stdout is not a terminal (a pipe, a CI log) at its natural width, so no cell is cut to
    the 80 columns Rich assumes there."""
    if out.is_terminal:
        out.print(table)
        return
    width = Measurement.get(out, out.options.update_width(100_000), table).maximum
    # Console.print caps its width at the console's: a console of the table's own width prints it whole.
    Console(file=out.file, highlight=False, width=max(width, out.width)).print(table)


# What each SizedFrom means, for the estimate's model lines.
_SIZED_FROM = {
    catalog.SizedFrom.CATALOG: "the catalog",
    catalog.SizedFrom.INPUT: "its config.json",
    catalog.SizedFrom.HUB: "its config.json on the Hub",
    catalog.SizedFrom.PARAMS_BILLION: "params_billion (a guessed Llama shape: no config.json was read)",
}


def model_lines(jobs: list[JobSpec]) -> list[str]:
    """One line per Hub model of the run: its size (active parameters too, for a mixture of experts) and where its
    shape came from."""
    lines = []
    for key in dict.fromkeys(job["model_key"] for job in jobs if job["model_key"] not in catalog.MODELS):
        job = next(job for job in jobs if job["model_key"] == key)
        model = catalog.model_of_job(job)
        active = f", {model.active_parameters / 1e9:.2f}B active per token" if model.architecture.experts else ""
        lines.append(
            f"{key}: {model.params_billion:.2f}B parameters{active}, sized from "
            f"{_SIZED_FROM[catalog.SizedFrom(job['architecture_source'])]}"
        )
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def print_estimate(estimate: Estimate) -> None:
    """Per job: the plan (instance, strategy, batch, per-GPU memory), the time parts in minutes, low / expected /
    high and maximum dollars, the price and its source; the time model's constants; the totals."""
    table = Table(
        title="Estimated time (minutes) and cost: low / expected / high (lambdas/estimate.py), and the maximum "
        "(max runtime x instances x hourly price)"
    )
    parts = [part for part in estimate_model.PARTS]
    numeric = {"batch", "GiB/GPU", *parts, "total", "low $", "exp $", "high $", "max $"}
    columns = [
        "model",
        "approach",
        "instance",
        "strategy",
        "batch",
        "GiB/GPU",
        "bound by",
        *parts,
        "total",
        "low $",
        "exp $",
        "high $",
        "max $",
        "$/h (source)",
    ]
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left", no_wrap=True)
    for job, fit in zip(estimate.jobs, estimate.fits, strict=True):
        usable = fit.placement.gpu_usable_bytes
        seconds = job["estimated_seconds"]
        table.add_row(
            job["model_key"],
            job["approach"],
            f"{job['instance_count']} x {job['instance_type']}" + (" spot" if job["spot"] else ""),
            job["strategy"],
            str(job["batch_size"]),
            f"{_gib(fit.device.total or fit.evaluation_bytes)} of {_gib(usable)}" if usable else "host RAM",
            job["estimated_bottleneck"],
            *[_minutes(seconds[part]) for part in parts],
            _minutes(seconds["total"]),
            f"{job['estimated_low_cost_usd']:.2f}",
            f"{job['estimated_cost_usd']:.2f}",
            f"{job['estimated_high_cost_usd']:.2f}",
            f"{job['estimated_max_cost_usd']:.2f}",
            f"{job['hourly_price_usd']:.3f} ({job['price_source']})",
        )
    print_whole(table)
    for line in model_lines(estimate.jobs):
        out.print(line)
    assumptions = Table(title="Time-model constants (lambdas/catalog.py TIME_MODEL; calibrated from recorded jobs)")
    for column in ("constant", "best / expected / worst", "source"):
        assumptions.add_column(column, no_wrap=column != "source")
    for row in estimate_model.assumptions_table():
        assumptions.add_row(*row)
    print_whole(assumptions)
    totals = estimate.as_json()
    out.print(
        f"total expected: ${totals['expected_usd']:.2f} (low ${totals['low_usd']:.2f}, high "
        f"${totals['high_usd']:.2f}) for {len(estimate.jobs)} jobs"
    )
    verdict = "within" if estimate.total_usd <= estimate.budget_usd else "OVER"
    out.print(
        f"total: ${estimate.total_usd:.2f} maximum for {len(estimate.jobs)} jobs; budget ${estimate.budget_usd:.2f} "
        f"({verdict}). Spot jobs are billed for the seconds they train, usually far below the maximum."
    )


InputFile = Annotated[Path | None, typer.Argument(help="execution input JSON (contract v1)", show_default=False)]
MatrixOption = Annotated[Matrix | None, typer.Option(help="a named matrix instead of a file")]
ModelConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-config",
        help="MODEL=FILE: a Hub model's config.json read from FILE instead of the Hub (offline); repeatable; FILE "
        "alone when the input names one Hub model",
    ),
]


@app.command()
@translated_errors
def validate(
    ctx: typer.Context, file: InputFile = None, matrix: MatrixOption = None, model_config: ModelConfigOption = None
) -> None:
    """Check an execution input as Plan does (schema, catalog, memory fit), offline but for Hub models' config.json;
    exit 2 naming each bad field."""
    estimate = estimate_input(sized_input(execution_input(file, matrix), model_config), ctx.obj.config)
    out.print(f"valid: {len(estimate.jobs)} job(s)")


@app.command()
@translated_errors
def estimate(
    ctx: typer.Context,
    file: InputFile = None,
    matrix: MatrixOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for CI (one JSON object on stdout)")
    ] = OutputFormat.TABLE,
    model_config: ModelConfigOption = None,
) -> None:
    """Each job's plan, time parts and low / expected / high cost by the time model, and its maximum, offline but
    for Hub models' config.json."""
    found = estimate_input(sized_input(execution_input(file, matrix), model_config), ctx.obj.config)
    if output_format is OutputFormat.JSON:
        print(json.dumps(found.as_json(), indent=2))  # plain print: no Rich wrapping or markup in the JSON
        return
    print_estimate(found)


# ---------------------------------------------------------------------------------------------------------------------
# Executions
# ---------------------------------------------------------------------------------------------------------------------
def console_url(execution_arn: str) -> str:
    """The Step Functions console page of an execution."""
    region = execution_arn.split(":")[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def execution_arn(session: Session, execution: str) -> str:
    """An execution ARN from an ARN or an execution name of the stack's state machine."""
    if execution.startswith("arn:"):
        return execution
    machine = session.outputs.state_machine_arn
    return machine.replace(":stateMachine:", ":execution:") + f":{execution}"


def run_id_of(execution: str) -> str:
    """The run id of an execution ARN or name (a plain run id stays as it is)."""
    return naming.run_id_from_execution_name(execution.rsplit(":", 1)[-1])


def _run_jobs(session: Session, run_id: str) -> list[dict[str, Any]]:
    """The run's training jobs (SageMaker Search by their run_id tag: full descriptions with Tags)."""
    return list(cleanup.find_run_jobs(session.client("sagemaker"), run_id, session.config.job_name_prefix))


def _job_states(session: Session, run_id: str) -> Iterator[tuple[str, str]]:
    """(job name, "Status/SecondaryStatus") of the run's training jobs."""
    for job in _run_jobs(session, run_id):
        yield job["TrainingJobName"], f"{job.get('TrainingJobStatus')}/{job.get('SecondaryStatus')}"


def print_quota_requests(session: Session, message: str) -> None:
    """After a quota refusal (Plan's QuotaExceeded, CreateTrainingJob's ResourceLimitExceeded): the exact command
    that requests each short quota."""
    shortfalls = quota_requests.shortfalls_in(message)
    if not shortfalls:
        return
    err.print("request the increase (or lower max_concurrency in cdk.json):")
    for line in quota_requests.request_commands(session.client("service-quotas"), shortfalls, session.boto.region_name):
        err.print(f"  {line}")


def follow(session: Session, arn: str) -> int:
    """Show the run's jobs (a live table in a terminal, change lines elsewhere) until the execution ends; the exit
    status."""
    sfn = session.client("stepfunctions")
    dynamodb = session.client("dynamodb")
    view = live.run_view(out)
    try:
        while True:
            description = sfn.describe_execution(executionArn=arn)
            run_id = run_id_of(description["name"])
            recorded = {
                row["job_name"]: row for row in ledger.run_rows(dynamodb, session.outputs.ledger_table_name, run_id)
            }
            now = datetime.now(UTC)
            states = [
                live.job_state(job, recorded.get(job["TrainingJobName"]), now) for job in _run_jobs(session, run_id)
            ]
            view.show(description["status"], states, recorded)
            if description["status"] in ENDED:
                break
            time.sleep(session.poll_seconds)
    finally:
        view.close()
    status = description["status"]
    out.print(f"execution {status}: run {run_id}")
    cause = description.get("cause") or ""
    if status != "SUCCEEDED":
        err.print(f"{description.get('error') or status}: {cause}".rstrip(": "))
    # Plan's QuotaExceeded is the execution's cause; a job that kept hitting ResourceLimitExceeded at launch is
    # recorded Failed with SageMaker's message as its reason.
    print_quota_requests(session, "\n".join([cause, *(str(r.get("failure_reason") or "") for r in recorded.values())]))
    if status != "SUCCEEDED":
        return EXIT_FAILED
    out.print(f"report: finetune report {run_id}")
    return 0


@app.command()
@translated_errors
def start(
    ctx: typer.Context,
    input_file: Annotated[Path | None, typer.Option("--input", help="execution input JSON")] = None,
    matrix: MatrixOption = None,
    model: Annotated[str | None, typer.Option(help="one experiment: catalog model or Hub id")] = None,
    approach: Annotated[str | None, typer.Option(help=f"{', '.join(catalog.APPROACHES)} (baseline: zero-shot)")] = None,
    budget: Annotated[float | None, typer.Option(help="budget_usd (default: the deployment's)")] = None,
    name: Annotated[str | None, typer.Option(help="execution name (the run id derives from it)")] = None,
    wait: Annotated[bool, typer.Option(help="follow the execution; exit 1 unless it SUCCEEDED")] = False,
    model_config: ModelConfigOption = None,
) -> None:
    """Validate locally, then start an execution (with each Hub model's shape from its config.json); print its ARN
    and console URL."""
    session: Session = ctx.obj
    doc = sized_input(execution_input(input_file, matrix, model, approach, budget), model_config)
    name = name or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    estimate = estimate_input(doc, session.config, run_id=run_id_of(name))
    # Plan prices with the Price List API; the catalog's prices refuse an over-budget input before anything starts.
    plan.enforce_budget(estimate.jobs, estimate.budget_usd)
    arn = session.client("stepfunctions").start_execution(
        stateMachineArn=session.outputs.state_machine_arn, name=name, input=json.dumps(doc)
    )["executionArn"]
    out.print(f"started {arn}")
    out.print(f"run id: {run_id_of(name)}; {len(estimate.jobs)} job(s), at most ${estimate.total_usd:.2f}")
    out.print(f"console: {console_url(arn)}")
    if wait:
        raise typer.Exit(follow(session, arn))


Execution = Annotated[str, typer.Argument(help="execution ARN or name")]


@app.command()
@translated_errors
def watch(ctx: typer.Context, execution: Execution) -> None:
    """Follow an execution's jobs until it ends; exit 1 unless it SUCCEEDED."""
    raise typer.Exit(follow(ctx.obj, execution_arn(ctx.obj, execution)))


@app.command()
@translated_errors
def stop(ctx: typer.Context, execution: Execution) -> None:
    """Stop an execution; the stack's Cleanup Lambda then stops its training jobs and records them."""
    session: Session = ctx.obj
    arn = execution_arn(session, execution)
    sfn = session.client("stepfunctions")
    status = sfn.describe_execution(executionArn=arn)["status"]
    if status != "RUNNING":
        out.print(f"execution already ended: {status}")
        return
    sfn.stop_execution(executionArn=arn, error="StoppedByOperator", cause="finetune stop")
    out.print(f"stopped execution {arn}")
    running = [(job, state) for job, state in _job_states(session, run_id_of(arn)) if state.startswith("InProgress")]
    if not running:
        out.print("no training job of the run was in progress")
        return
    out.print("the stack's Cleanup Lambda stops these training jobs and records their cost:")
    for job, state in running:
        out.print(f"  {job}: {state}")


@app.command()
@translated_errors
def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="training job name (as `finetune watch` shows it)")],
    follow_job: Annotated[bool, typer.Option("--follow", "-f", help="keep reading until the job ends")] = False,
) -> None:
    """A training job's CloudWatch logs from every host, interleaved by time as the SageMaker SDK prints them; exit 1
    when the job Failed or was Stopped."""
    session: Session = ctx.obj
    hosts: set[str] = set()

    def emit(line: job_logs.LogLine) -> None:
        hosts.add(line.host)
        # The message is the container's own text: never Rich markup. Host prefix: which machine said it.
        out.print(f"[{line.host}] {line.message}", markup=False, style=_host_style(line.host))

    description = job_logs.tail(
        # As the SDK's log reader: a long follow outlives transient throttling (GetLogEvents is 25 requests/s).
        session.client("logs", config=ClientConfig(retries={"max_attempts": 15, "mode": "standard"})),
        session.client("sagemaker"),
        job,
        emit,
        follow=follow_job,
        poll_seconds=session.poll_seconds,
    )
    status = description["TrainingJobStatus"]
    if not hosts:
        err.print(f"no log stream yet for {job} in {job_logs.LOG_GROUP}")
    if status in ("Failed", "Stopped"):
        err.print(f"job {status}: {description.get('FailureReason') or description.get('SecondaryStatus')}")
        raise typer.Exit(EXIT_FAILED)
    if follow_job or status != "InProgress":
        err.print(f"job {status}/{description.get('SecondaryStatus')}")


def _host_style(host: str) -> str:
    # As the SDK's ColorWrap: one colour per host, the same host always the same colour (ignored off a terminal).
    colours = ("blue", "magenta", "green", "cyan", "yellow")
    number = host.rsplit("-", 1)[-1]
    return colours[(int(number) - 1) % len(colours)] if number.isdigit() else "default"


# ---------------------------------------------------------------------------------------------------------------------
# Reports and runs
# ---------------------------------------------------------------------------------------------------------------------
def load_report(session: Session, run_id: str) -> dict[str, Any]:
    """The run's report.json from S3; built from the ledger when the run has none yet (still running)."""
    json_key, _ = naming.report_keys(run_id)
    try:
        body = session.client("s3").get_object(Bucket=session.outputs.bucket_name, Key=json_key)["Body"].read()
        return json.loads(body)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
    rows = ledger.run_rows(session.client("dynamodb"), session.outputs.ledger_table_name, run_id)
    if not rows:
        err.print(f"no run {run_id}: no report in S3 and no job in the ledger")
        raise typer.Exit(EXIT_FAILED)
    err.print(f"no report in S3 for {run_id} yet: built from the ledger's {len(rows)} job row(s)")
    return report.build_report(run_id, rows)


def _money(value: Any) -> str:
    return "" if value is None else f"{float(value):.4f}"


def print_report_table(document: dict[str, Any]) -> None:
    """The ranked jobs as a table (report.md's columns, `lambdas/report/columns.TERMINAL_JOBS`), then totals."""
    title = f"run {document['run_id']}: ranked by tier, then cost per accuracy point (report.md: why)"
    table = terminal_table(title, report_columns.TERMINAL_JOBS, document["jobs"])
    print_whole(table)
    if document.get("partial"):
        out.print(f"partial report: the execution ended {document.get('execution_status')}")
    totals = document["totals"]
    out.print(
        f"{totals['jobs']} jobs: {totals['completed']} completed, {totals['failed']} failed, "
        f"{totals['stopped']} stopped; total ${totals['cost_usd']:.4f}"
    )


@app.command(name="report")
@translated_errors
def report_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="run id, execution name or execution ARN")],
    format: Annotated[ReportFormat, typer.Option("--format", help="table, md or json")] = ReportFormat.TABLE,
    out_dir: Annotated[Path | None, typer.Option("--out", help="also write report.json, report.md, charts")] = None,
) -> None:
    """A run's report: ranked jobs, bests and totals (from S3, or from the ledger while it runs)."""
    document = load_report(ctx.obj, run_id_of(run))
    if format is ReportFormat.JSON:
        out.print_json(json.dumps(document))
    elif format is ReportFormat.MD:
        out.print(report.render_markdown(document), markup=False)
    else:
        print_report_table(document)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(document, indent=2, sort_keys=True))
        (out_dir / "report.md").write_text(report.render_markdown(document))
        charts = report.charts(document)
        for chart_name, svg in charts.items():
            (out_dir / chart_name).write_text(svg)
        err.print(f"wrote report.json, report.md and {', '.join(charts)} to {out_dir}")


@app.command()
@translated_errors
def runs(ctx: typer.Context) -> None:
    """Every run with a report: its SUMMARY row from the ledger."""
    session: Session = ctx.obj
    rows = ledger.summary_rows(session.client("dynamodb"), session.outputs.ledger_table_name)
    table = Table(title="runs (ledger SUMMARY rows)")
    for column in ("run", "jobs", "completed", "failed", "stopped", "cost $", "best $/point"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["run_id"],
            *(str(row.get(key, "")) for key in ("jobs", "completed", "failed", "stopped")),
            _money(row.get("cost_usd")),
            str(row.get("best_cost_per_point_job") or ""),
        )
    print_whole(table)


@app.command(name="compare")
@translated_errors
def compare_command(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="two or more run ids, execution names or ARNs")],
    format: Annotated[ReportFormat, typer.Option("--format", help="table, md or json")] = ReportFormat.TABLE,
) -> None:
    """The same jobs (model x approach) side by side across runs: status, accuracy, parse rate, cost, $/point."""
    session: Session = ctx.obj
    dynamodb = session.client("dynamodb")
    rows_by_run = {}
    for run in run_ids:
        run_id = run_id_of(run)
        rows = ledger.run_rows(dynamodb, session.outputs.ledger_table_name, run_id)
        if not rows:
            err.print(f"no run {run_id}: no job in the ledger")
            raise typer.Exit(EXIT_FAILED)
        rows_by_run[run_id] = rows
    document = comparison.comparison(rows_by_run)
    if format is ReportFormat.JSON:
        out.print_json(json.dumps(document))
    elif format is ReportFormat.MD:
        out.print(comparison.render_markdown(document), markup=False)
    else:
        title = "runs side by side (ledger job rows): status, accuracy, parse rate, cost, $ per point"
        print_whole(terminal_table(title, comparison.table(document), document["jobs"]))


# ---------------------------------------------------------------------------------------------------------------------
# Data and quotas
# ---------------------------------------------------------------------------------------------------------------------
@app.command()
@translated_errors
def data(
    ctx: typer.Context,
    source: Annotated[
        str | None, typer.Argument(help="banking77 (PolyAI/banking77 from the Hub) or banking77-mini (bundled)")
    ] = None,
    train: Annotated[Path | None, typer.Option(help="CSV or JSONL training rows")] = None,
    test: Annotated[Path | None, typer.Option(help="CSV or JSONL test rows")] = None,
    name: Annotated[str | None, typer.Option(help="dataset name: datasets/<name>/ in the bucket")] = None,
    text_column: Annotated[str, typer.Option(help="column holding the message")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the intent")] = "label",
    task: Annotated[
        str, typer.Option(help="classification ({text, label}) or sft ({messages} or {prompt, completion} JSONL)")
    ] = "classification",
) -> None:
    """Banking77 from the Hub, the bundled sample or your files: check the rows ({"text", "label"}; a malformed one
    is refused with its line) and upload them to the bucket's datasets/<name>/{train,test}/, where an execution input
    names them as dataset.name."""
    from training_code import prepare_data

    session: Session = ctx.obj
    if source not in (None, "banking77", "banking77-mini"):
        raise typer.BadParameter(f"unknown dataset {source!r}: banking77, banking77-mini, or --train/--test/--name")
    if source is None and not (train and test and name):
        raise typer.BadParameter("give banking77, banking77-mini, or --train, --test and --name")
    name = name or str(source)
    bucket = session.outputs.bucket_name  # the stack first: no download for a stack that is not there
    with tempfile.TemporaryDirectory() as work:
        if source == "banking77":
            train, test = _download_banking77(session, Path(work) / "hub")
            text_column, label_column = "text", "label"
        elif source == "banking77-mini":
            train, test = MINI_DATASET / "train.jsonl", MINI_DATASET / "test.jsonl"
        # Every source goes through the same checks and upload: a malformed row is refused with its line.
        status = prepare_data.main(
            [
                "file",
                *("--train", str(train), "--test", str(test), "--name", name, "--out-dir", work),
                *("--text-column", text_column, "--label-column", label_column),
                *("--task", task),
                *("--bucket", bucket),
            ],
            s3_client=session.client("s3"),
        )
    if status:
        raise typer.Exit(EXIT_INVALID)
    out.print(f'start it with an input holding "dataset": {{"name": "{name}"}}')


def _download_banking77(session: Session, folder: Path) -> tuple[Path, Path]:
    """PolyAI/banking77 from the Hub as contract JSON Lines under `folder`: the train and test files."""
    from training_code.prepare_data import write_splits

    err.print(f"downloading {hub_data.BANKING77} from the Hugging Face Hub")
    train, test, revision = hub_data.load_banking77(session.load_dataset)
    if revision:
        err.print(f"the Hub repository holds a loading script, which datasets>=4 refuses: read {revision}")
    paths = write_splits(folder, train, test)
    return paths["train"], paths["test"]


@app.command()
@translated_errors
def quotas(ctx: typer.Context, file: InputFile = None, matrix: MatrixOption = None) -> None:
    """Applied SageMaker quotas and open increase requests vs the instances the input holds at once at the
    deployment's max_concurrency; for each short quota the command that requests it. Exit 1 when one is short."""
    session: Session = ctx.obj
    estimate = estimate_input(execution_input(file, matrix or (None if file else Matrix.STUDY)), session.config)
    spot = estimate.doc.get("spot", catalog.default("spot"))
    needed = plan.instances_needed(estimate.jobs, session.config.max_concurrency)
    rows, requests_read = quota_requests.standings(session.client("service-quotas"), needed, spot=spot)
    table = Table(title=f"instances held at once (max_concurrency {session.config.max_concurrency})")
    for column in ("instance", "quota", "code", "needs", "applied", "open request", "ok"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row.cells())
    commands = [command for row in rows if (command := row.request_command(session.boto.region_name))]
    print_whole(table)
    if not requests_read:
        err.print("cannot read open quota requests (servicequotas:ListRequestedServiceQuotaChangeHistory)")
    if commands:
        out.print("request the short quotas (or lower max_concurrency in cdk.json):")
        for command in commands:
            out.print(f"  {command}")
    if any(row.short for row in rows):
        raise typer.Exit(EXIT_FAILED)


# ---------------------------------------------------------------------------------------------------------------------
# reconcile: the reconciler's pass, from the operator's terminal (lambdas/reconcile.py; the stack runs it hourly)
# ---------------------------------------------------------------------------------------------------------------------
@app.command()
@translated_errors
def reconcile(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only: stop and record nothing")] = False,
) -> None:
    """Stop training jobs no running execution watches and record ended jobs the ledger lacks (as the stack's hourly
    Reconcile Lambda does, with your credentials); exit 1 when it found any. The topic is not notified."""
    from lambdas import reconcile as reconciler

    session: Session = ctx.obj
    settings = reconciler.ReconcileSettings(
        table_name=session.outputs.ledger_table_name,
        topic_arn="",
        job_name_prefix=session.config.job_name_prefix,
        state_machine_arn=session.outputs.state_machine_arn,
        lookback_days=session.config.reconcile_lookback_days,
        stop_wait_seconds=session.config.cleanup_stop_wait_seconds,
    )
    result = reconciler.reconcile(
        settings,
        sagemaker=session.client("sagemaker"),
        dynamodb=session.client("dynamodb"),
        stepfunctions=session.client("stepfunctions"),
        sns=None,
        dry_run=dry_run,
    )
    out.print(result["message"])
    if result["unwatched"] or result["unrecorded"] or result.get("under_recorded"):
        raise typer.Exit(EXIT_FAILED)
