"""Typed errors of the workflow's Lambda functions.

Lambda reports an unhandled exception by its class name, and Step Functions matches `Retry`/`Catch` on that name:
`QuotaExceeded` raised here is the `QuotaExceeded` error the state machine sees. So: one class per decision the state
machine (or an operator) makes differently, a message that says what to do, and never rename a class lightly.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class: every error here carries a human-readable message that names the offending field or resource."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidExecutionInput(WorkflowError):
    """The execution input breaks the v1 schema or names something the catalog does not know. Nothing was launched."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        # Each problem is (JSON path like `experiments[0].approach`, what is wrong and what is allowed).
        self.problems = problems
        super().__init__("Invalid execution input: " + "; ".join(f"{path}: {why}" for path, why in problems))


class DatasetNotFound(WorkflowError):
    """A dataset prefix holds no object. Nothing was launched."""


class BudgetExceeded(WorkflowError):
    """The estimated maximum cost of the planned jobs is above the budget. Nothing was launched."""


class QuotaExceeded(WorkflowError):
    """An applied account quota is below what the planned run needs at once. Nothing was launched."""


class Throttled(WorkflowError):
    """AWS kept throttling after the SDK's own retries; the state machine retries this with backoff."""


class LaunchRejected(WorkflowError):
    """CreateTrainingJob refused the job for a reason retrying will not fix (validation, access denied)."""


class TrainingJobNotFound(WorkflowError):
    """DescribeTrainingJob does not know the job."""


class ConfigurationError(WorkflowError):
    """The function's environment is missing a variable or has an unusable value (a deployment bug)."""


class InfeasibleJob(WorkflowError):
    """A job's training or evaluation does not fit its instances' GPU or host memory, by the memory planner. The
    message gives the numbers and the cheapest feasible alternative. Nothing was launched."""


class ExecutionLimitExceeded(WorkflowError):
    """The run could outlast the execution timeout or the 25,000-event history of one execution. Nothing was
    launched."""


class HfTokenMissing(WorkflowError):
    """A gated model is requested and the Hugging Face token secret has no value. Nothing was launched."""


class ResourceLimitReached(WorkflowError):
    """CreateTrainingJob hit an account limit (ResourceLimitExceeded), possibly held by another run: the state machine
    retries this after a long wait."""


class QuotaExhausted(WorkflowError):
    """CreateTrainingJob hit an account limit that the job exceeds on its own (e.g. a quota of 0 on a new account):
    waiting cannot help, so it is not retried; the remedy moves the job to another instance type."""


class JobNameConflict(WorkflowError):
    """A training job with this name exists but was not created for this job spec (e.g. a reused execution name with
    other input or code). Retrying cannot help."""


class InvalidHyperparameter(LaunchRejected):
    """A hyperparameter value contains whitespace or a shell metacharacter: older SageMaker training toolkits pass the
    command line through a shell, where it would split or expand."""


class JobStatusUnavailable(WorkflowError):
    """DescribeTrainingJob failed after botocore's retries with an error that says nothing about the job (an API
    incident, a network fault, a permission being propagated). The job may still be billing: the state machine keeps
    asking (watch_retry) instead of treating it as lost."""
