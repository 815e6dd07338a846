"""What to do about a failed attempt: one remedy per failure class (lambdas/failures.py), bounded by the execution's
remedy policy and its budget.

`decide` is pure apart from the two look-ups it is given (an instance type's hourly price, the applied quota
values), so every branch is tested without AWS. A remedy is a new JobSpec, the next attempt: the same job with a
deterministic attempt name (`naming.attempt_job_name`), the changed settings, and what the earlier attempts cost.

- quota_exhausted: the next instance type of the catalog's fallback list for the job's size class and approach
  (`catalog.FALLBACK_INSTANCES`) that the memory planner accepts and whose quota allows it, plus a hint naming the
  quota to raise;
- capacity_unavailable / spot_wait_exceeded: on-demand when the policy allows it (and its quota does), else the
  next instance type;
- out_of_memory: half the per-device batch with twice the gradient accumulation (the same effective batch), down to
  batch 1; then LoRA -> QLoRA when the policy allows it;
- runtime_exceeded: the same job resumed from its checkpoints with `runtime_extension_factor` x the MaxRuntime;
- throttled: the same job again; user_code_error / data_error (and unknown, unless `retry_unknown`): stop.

Bounds: at most `max_attempts` attempts per job (the first one included), and never over the job's share of the
budget: the remedied job's maximum cost plus what its earlier attempts cost must fit `allowance_usd`, the job's own
planned maximum plus an equal share of the run's unplanned budget (so all jobs' remedies together stay within
budget_usd, whatever order they fail in), and never past the execution's timeout: an attempt that could outlast it
is not started.

Checkpoints: a remedy that keeps what the training code checks before resuming (training_code/checkpoints.py,
IDENTITY_FIELDS: approach, batch, gradient accumulation, ...) keeps the job's checkpoint prefix, so the next attempt
continues where the last one stopped. One that changes them (a smaller batch, QLoRA) would be refused by that check,
so it gets its own prefix under the job's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal
from typing import Any, Literal, NotRequired, TypedDict

from lambdas import approaches, calibration, catalog, cost, estimate, memory, naming
from lambdas.failures import FailureClass
from lambdas.job_spec import JobSpec

MAX_ATTEMPTS_LIMIT = 10


@dataclass(frozen=True)
class RemedyPolicy:
    """How far the workflow may go to rescue a failed job (execution input `remedies`, over the deployment's
    defaults: stacks/config.py `remedies`)."""

    # Attempts per job, the first one included: 1 turns remedies off.
    max_attempts: int = 3
    # Capacity and spot-wait failures may move a spot job to on-demand (it costs up to ~3x the spot price).
    on_demand: bool = True
    # Quota and capacity failures may move a job to another instance type of the catalog's fallback list.
    instance_fallback: bool = True
    # An out-of-memory LoRA job at batch 1 may become QLoRA (4-bit weights; it trains slower, quality may differ).
    qlora_fallback: bool = True
    # A job stopped at MaxRuntime resumes from its checkpoints with this many times the runtime bound.
    runtime_extension_factor: float = 2.0
    # An unclassified failure is retried once as it was (off: an unknown cause rarely goes away by itself).
    retry_unknown: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON for the state machine and the ledger."""
        return asdict(self)


_POLICY_FIELDS = {f.name: f for f in fields(RemedyPolicy)}


def parse_policy(values: Mapping[str, Any] | None, defaults: RemedyPolicy | None = None) -> RemedyPolicy:
    """`values` (schema-validated execution input, or the deployment's defaults) over `defaults`; `ValueError`
    naming the field when a value is unusable (the schema already bounds the execution input's)."""
    policy = defaults or RemedyPolicy()
    changes: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key not in _POLICY_FIELDS:
            raise ValueError(f"remedies.{key}: unknown; allowed: {', '.join(_POLICY_FIELDS)}")
        expected = _POLICY_FIELDS[key].type
        if expected == "bool" and not isinstance(value, bool):
            raise ValueError(f"remedies.{key} must be true or false, got {value!r}")
        if expected == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"remedies.{key} must be an integer >= 1, got {value!r}")
        if expected == "float" and (isinstance(value, bool) or not isinstance(value, int | float) or value < 1):
            raise ValueError(f"remedies.{key} must be a number >= 1, got {value!r}")
        changes[key] = float(value) if expected == "float" else value
    policy = replace(policy, **changes)
    if policy.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise ValueError(f"remedies.max_attempts must be at most {MAX_ATTEMPTS_LIMIT}, got {policy.max_attempts}")
    return policy


class RemedyOutcome(TypedDict):
    """The Remedy step's output (`Decision.as_dict`), which Record also takes for the attempt's row."""

    action: Literal["retry", "stop"]
    remedy: str
    cause: str
    hint: str
    spent_usd: float
    job: NotRequired[JobSpec]  # the next attempt, when `action` is retry


@dataclass(frozen=True)
class Decision:
    """Retry with `job` (the next attempt), or stop with `cause`. `remedy` says what changed, `hint` what a person
    could do (e.g. the quota to raise); `spent_usd` is what this job's attempts so far cost."""

    retry: bool
    remedy: str
    cause: str
    spent_usd: float
    job: JobSpec | None = None
    hint: str = ""

    def as_dict(self) -> RemedyOutcome:
        """The Remedy step's output: `action` is what the state machine's Choice reads."""
        outcome: RemedyOutcome = {
            "action": "retry" if self.retry else "stop",
            "remedy": self.remedy,
            "cause": self.cause,
            "hint": self.hint,
            "spent_usd": self.spent_usd,
        }
        if self.job is not None:
            outcome["job"] = self.job
        return outcome


PriceOf = Callable[[str], cost.Price]
QuotaOf = Callable[[str, bool], float | None]  # (instance type, spot) -> applied quota value, None when unknown


def attempt_of(job: Mapping[str, Any]) -> int:
    """A job's attempt number (1 for Plan's specs)."""
    return int(job.get("attempt") or 1)


def base_job_name(job: Mapping[str, Any]) -> str:
    """The name of a job's first attempt (Plan's name)."""
    return str(job.get("base_job_name") or job["job_name"])


def attempt_cost_usd(job: Mapping[str, Any], status: Mapping[str, Any]) -> Decimal:
    """What a finished attempt cost: billable seconds x instances x hourly price (as the ledger computes it)."""
    return cost.job_cost_usd(
        int(status.get("billable_seconds") or 0), int(job["instance_count"]), cost.to_decimal(job["hourly_price_usd"])
    )


def allowance_usd(job: Mapping[str, Any], reserve_per_job_usd: float) -> Decimal:
    """The most this job's attempts may cost together: its planned maximum plus its share of the unplanned budget
    (kept on the job from the first remedy on, so later ones do not count the grown maximum twice)."""
    if job.get("allowance_usd") is not None:
        return cost.to_decimal(job["allowance_usd"])
    return cost.to_decimal(job["estimated_max_cost_usd"]) + max(cost.to_decimal(reserve_per_job_usd), Decimal(0))


def _model(job: Mapping[str, Any]) -> catalog.Model:
    return catalog.model_of_job(job)


def _rows(job: Mapping[str, Any]) -> float:
    return float(job.get("estimated_train_rows") or catalog.DEFAULT_TRAIN_ROWS)


def fits(job: Mapping[str, Any], instance_type: str, instance_count: int) -> memory.FitEstimate | None:
    """The cheapest expected strategy for `job` (its batch kept) on `instance_count` x `instance_type` that fits by
    the memory planner, or None when none does."""
    instance = catalog.INSTANCES.get(instance_type)
    if instance is None or (job["approach"] in catalog.GPU_ONLY_APPROACHES and not instance.has_gpu):
        return None
    shape = estimate.shape_of(
        {**job, "instance_type": instance_type, "instance_count": instance_count, "hourly_price_usd": None},
        model=_model(job),
        rows=_rows(job),
    )
    found = estimate.cheapest_on(shape, fixed_batch=True)
    return found.fit if found is not None else None


def _quota_allows(quota_of: QuotaOf, instance_type: str, spot: bool, count: int) -> bool:
    value = quota_of(instance_type, spot)
    return value is None or value >= count  # an unknown quota is tried: CreateTrainingJob is the judge


def _next_instance(
    job: Mapping[str, Any], quota_of: QuotaOf, *, spot: bool
) -> tuple[str, int, memory.FitEstimate] | tuple[None, list[str], None]:
    """The first type of the fallback list not tried yet that fits and whose quota allows it; else (None, why
    each candidate was passed over, None)."""
    tried = set(job.get("tried_instance_types") or []) | {job["instance_type"]}
    model = _model(job)
    passed_over: list[str] = []
    for candidate in catalog.fallback_instances(model.params_billion, job["approach"]):
        if candidate in tried:
            continue
        count = job["instance_count"] if catalog.INSTANCES[candidate].gpus == job["gpus_per_instance"] else 1
        fit = fits(job, candidate, count)
        if fit is None:
            passed_over.append(f"{candidate}: does not fit by the memory planner")
            continue
        if not _quota_allows(quota_of, candidate, spot, count):
            passed_over.append(f"{candidate}: quota '{catalog.training_quota_name(candidate, spot)}' too low")
            continue
        return candidate, count, fit
    return None, passed_over, None


def _with_instance(job: JobSpec, instance_type: str, count: int, fit: memory.FitEstimate, price: cost.Price) -> JobSpec:
    return {
        **job,
        "instance_type": instance_type,
        "instance_count": count,
        "gpus_per_instance": catalog.INSTANCES[instance_type].gpus,
        "strategy": fit.strategy.value,
        "save_interval_seconds": fit.save_interval_seconds,
        "hourly_price_usd": float(price.hourly_usd),
        "price_source": price.source,
        "tried_instance_types": sorted({*(job.get("tried_instance_types") or []), job["instance_type"]}),
    }


def _quota_hint(instance_type: str, spot: bool, count: int) -> str:
    name = catalog.training_quota_name(instance_type, spot)
    return (
        f"Request an increase of the SageMaker quota '{name}' to at least {count} in Service Quotas (service code "
        "sagemaker), e.g. `aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code "
        f"<code of '{name}'> --desired-value {count}`; `finetune quotas` lists the codes."
    )


@dataclass(frozen=True)
class Failed:
    """A failed attempt as the remedies see it: the job, why it failed, and the look-ups a remedy may make."""

    job: JobSpec
    kind: FailureClass
    evidence: str
    policy: RemedyPolicy
    price_of: PriceOf
    quota_of: QuotaOf


@dataclass(frozen=True)
class Remedy:
    """The next attempt's settings (`changes`: the whole job), what changed (`text`), whether the change makes the
    job's checkpoints unusable (`new_checkpoints`), and what a person could do (`hint`)."""

    changes: JobSpec
    text: str
    new_checkpoints: bool = False
    hint: str = ""


@dataclass(frozen=True)
class NoRemedy:
    """Why a failure class's remedy does not apply (the Decision's cause), and what a person could do."""

    cause: str
    hint: str = ""


RemedyFor = Callable[[Failed], Remedy | NoRemedy]

# Classes no attempt can fix: the execution input or the training code must change (stop before any other bound).
TERMINAL: dict[FailureClass, str] = {
    FailureClass.USER_CODE_ERROR: "the training code failed",
    FailureClass.DATA_ERROR: "the dataset is unusable",
}


def decide(
    job: JobSpec,
    status: Mapping[str, Any],
    failure_class: str,
    evidence: str,
    policy: RemedyPolicy,
    *,
    reserve_per_job_usd: float,
    price_of: PriceOf,
    quota_of: QuotaOf,
    deadline_epoch_seconds: float | None = None,
    now_epoch_seconds: float | None = None,
) -> Decision:
    """The remedy for `job`'s failed attempt (its final `status`), or why there is none: the failure class's remedy
    (`REMEDIES`) within the shared bounds (attempts, the job's budget allowance, the execution's deadline). With a
    deadline (Plan's estimate of when the execution times out), no attempt starts that could outlast the execution:
    its worst case (spot MaxWait or MaxRuntime, plus the per-job overhead Plan's execution-limit check also counts)
    must end before it."""
    spent = cost.to_decimal(job.get("prior_cost_usd") or 0) + attempt_cost_usd(job, status)
    kind = FailureClass(failure_class) if failure_class in FailureClass._value2member_map_ else FailureClass.UNKNOWN
    refusal = _refusal_before_remedy(job, kind, evidence, policy)
    if refusal is not None:
        return Decision(False, "none", refusal, float(spent))
    found = REMEDIES[kind](Failed(job, kind, evidence, policy, price_of, quota_of))
    if isinstance(found, NoRemedy):
        return Decision(False, "none", found.cause, float(spent), hint=found.hint)
    now = time.time() if now_epoch_seconds is None else now_epoch_seconds
    left = None if deadline_epoch_seconds is None else deadline_epoch_seconds - now
    allowance = allowance_usd(job, reserve_per_job_usd)
    over = _over_bounds(job, kind, found, spent, allowance, seconds_left=left)
    if over is not None:
        return Decision(False, found.text, over, float(spent), hint=found.hint)
    next_job = _next_attempt(job, kind, found, spent, allowance)
    return Decision(True, found.text, f"{kind}: {evidence}", float(spent), job=next_job, hint=found.hint)


def _refusal_before_remedy(job: JobSpec, kind: FailureClass, evidence: str, policy: RemedyPolicy) -> str | None:
    """Why no attempt follows whatever the class's remedy: a terminal class, an unknown cause not to be retried, or
    no attempt left (checked before a remedy looks up prices or quotas)."""
    if kind in TERMINAL:
        return f"{kind}: {TERMINAL[kind]}; retrying cannot help, fix it and start a new execution. Evidence: {evidence}"
    if kind is FailureClass.UNKNOWN and not policy.retry_unknown:
        return f"unknown failure, not retried (remedies.retry_unknown is off). Evidence: {evidence}"
    attempt = attempt_of(job)
    if attempt >= policy.max_attempts:
        return (
            f"{kind} on attempt {attempt} of at most {policy.max_attempts} (remedies.max_attempts): no attempt left. "
            f"Evidence: {evidence}"
        )
    return None


def _quota_exhausted(failed: Failed) -> Remedy | NoRemedy:
    """Another instance type of the fallback list, with the quota to raise as the hint."""
    job = failed.job
    hint = _quota_hint(job["instance_type"], job["spot"], job["instance_count"])
    if not failed.policy.instance_fallback:
        return NoRemedy(f"quota_exhausted and remedies.instance_fallback is off. Evidence: {failed.evidence}", hint)
    changes, text = _instance_fallback(job, failed.price_of, failed.quota_of, spot=job["spot"])
    if changes is None:
        return NoRemedy(f"quota_exhausted and {text}. Evidence: {failed.evidence}", hint)
    return Remedy(changes, text, hint=hint)


def _no_capacity(failed: Failed) -> Remedy | NoRemedy:
    """capacity_unavailable / spot_wait_exceeded: on-demand when allowed (and its quota does), else the next
    instance type."""
    job, policy = failed.job, failed.policy
    if (
        job["spot"]
        and policy.on_demand
        and _quota_allows(failed.quota_of, job["instance_type"], False, job["instance_count"])
    ):
        on_demand: JobSpec = {**job, "spot": False, "max_wait_seconds": None}
        return Remedy(on_demand, f"spot -> on-demand on {job['instance_type']}")
    if policy.instance_fallback:
        changes, text = _instance_fallback(job, failed.price_of, failed.quota_of, spot=job["spot"])
        if changes is None:
            return NoRemedy(f"{failed.kind} and {text}. Evidence: {failed.evidence}")
        return Remedy(changes, text)
    return NoRemedy(
        f"{failed.kind}, and neither on-demand nor another instance type is allowed. Evidence: {failed.evidence}"
    )


def _out_of_memory(failed: Failed) -> Remedy | NoRemedy:
    """Half the per-device batch with twice the gradient accumulation (the same effective batch), down to batch 1;
    then LoRA -> QLoRA when the policy allows it. Either way the checkpoints cannot be resumed."""
    job, policy = failed.job, failed.policy
    batch, accumulation = job["batch_size"], job.get("gradient_accumulation_steps") or 1
    if batch > 1:
        smaller = batch // 2 if batch % 2 == 0 else 1
        factor = batch // smaller
        changes: JobSpec = {**job, "batch_size": smaller, "gradient_accumulation_steps": accumulation * factor}
        remedy = (
            f"per-device batch {batch} -> {smaller}, gradient accumulation {accumulation} -> "
            f"{accumulation * factor} (effective batch {batch * accumulation} kept)"
        )
    elif (fallback := approaches.get(job["approach"]).oom_fallback) and policy.qlora_fallback:
        changes = {
            **job,
            "approach": fallback,
            "output_s3_uri": job["output_s3_uri"].replace(f"-{job['approach']}/", f"-{fallback}/"),
        }
        remedy = f"{job['approach']} -> {fallback} (its out-of-memory fallback) at batch 1"
    else:
        allowed = " (remedies.qlora_fallback is off)" if approaches.get(job["approach"]).oom_fallback else ""
        return NoRemedy(
            f"out_of_memory at per-device batch 1 with {job['approach']}{allowed}. Evidence: {failed.evidence}"
        )
    return Remedy(changes, remedy, new_checkpoints=True)


def _runtime_exceeded(failed: Failed) -> Remedy | NoRemedy:
    """The same job resumed from its checkpoints with `runtime_extension_factor` x the MaxRuntime."""
    job = failed.job
    runtime = job["max_runtime_seconds"]
    longer = min(math.ceil(runtime * failed.policy.runtime_extension_factor), catalog.MAX_RUNTIME_HOURS_LIMIT * 3600)
    if longer <= runtime:
        return NoRemedy(f"runtime_exceeded at SageMaker's own limit of {runtime} s. Evidence: {failed.evidence}")
    changes: JobSpec = {
        **job,
        "max_runtime_seconds": longer,
        "max_wait_seconds": catalog.spot_max_wait_seconds(longer) if job["spot"] else None,
    }
    return Remedy(changes, f"resume from checkpoints with MaxRuntime {runtime} s -> {longer} s")


def _same_again(failed: Failed) -> Remedy | NoRemedy:
    """throttled, or unknown with retry_unknown: the same job again."""
    same: JobSpec = {**failed.job}
    return Remedy(same, "the same job again")


# One remedy per failure class that may be retried (TERMINAL lists the others).
REMEDIES: dict[FailureClass, RemedyFor] = {
    FailureClass.QUOTA_EXHAUSTED: _quota_exhausted,
    FailureClass.CAPACITY_UNAVAILABLE: _no_capacity,
    FailureClass.SPOT_WAIT_EXCEEDED: _no_capacity,
    FailureClass.OUT_OF_MEMORY: _out_of_memory,
    FailureClass.RUNTIME_EXCEEDED: _runtime_exceeded,
    FailureClass.THROTTLED: _same_again,
    FailureClass.UNKNOWN: _same_again,
}


def _over_bounds(
    job: JobSpec,
    kind: FailureClass,
    remedy: Remedy,
    spent: Decimal,
    allowance: Decimal,
    *,
    seconds_left: float | None,
) -> str | None:
    """Why the remedied attempt may not start: over the job's share of the budget, or able to outlast the
    execution (`seconds_left` until its deadline; None: no deadline)."""
    changes = remedy.changes
    maximum = _max_cost_usd(changes)
    if spent + maximum > allowance:
        return (
            f"{kind}: the remedy ({remedy.text}) could cost up to ${maximum:.2f}; with ${spent:.2f} spent on "
            f"{attempt_of(job)} attempt(s) that is over this job's ${allowance:.2f} share of budget_usd. Raise "
            "budget_usd to let it run."
        )
    if seconds_left is None:
        return None
    worst = (changes["max_wait_seconds"] or changes["max_runtime_seconds"]) + catalog.JOB_OVERHEAD_SECONDS
    if worst > seconds_left:
        return (
            f"{kind}: the remedy ({remedy.text}) could take up to {worst / 3600:.1f} h, and the execution times out in "
            f"{max(seconds_left, 0) / 3600:.1f} h. Start a new execution for this job, or raise "
            "finetune.execution_timeout_hours (cdk.json)."
        )
    return None


def _max_cost_usd(changes: JobSpec) -> Decimal:
    return cost.estimated_max_cost_usd(
        changes["max_runtime_seconds"], changes["instance_count"], changes["hourly_price_usd"]
    )


def _next_attempt(job: JobSpec, kind: FailureClass, remedy: Remedy, spent: Decimal, allowance: Decimal) -> JobSpec:
    """The next attempt's JobSpec: the remedied settings, re-estimated, under the attempt's deterministic name."""
    next_attempt = attempt_of(job) + 1
    name = naming.attempt_job_name(base_job_name(job), next_attempt)
    changes = remedy.changes
    checkpoint = job["checkpoint_s3_uri"]
    if remedy.new_checkpoints:
        # The training code refuses to resume a checkpoint written with another batch or approach.
        checkpoint = f"{checkpoint.rstrip('/')}/{name}/"
    # Another instance family is another calibration key: the attempt is estimated (and later calibrates) under it.
    in_force = calibration.carried_over(job, calibration.job_calibration_key(changes))
    expected = estimate.estimate_for_job(changes, model=_model(job), rows=_rows(job), calibration=in_force)
    return {
        **changes,
        **estimate.spec_fields(expected, in_force),
        "job_name": name,
        "attempt": next_attempt,
        "base_job_name": base_job_name(job),
        "checkpoint_s3_uri": checkpoint,
        "estimated_max_cost_usd": float(_max_cost_usd(changes)),
        "prior_cost_usd": float(spent),
        "allowance_usd": float(allowance),
        "remedies_applied": [*(job.get("remedies_applied") or []), f"{kind}: {remedy.text}"],
    }


def _instance_fallback(job: JobSpec, price_of: PriceOf, quota_of: QuotaOf, *, spot: bool) -> tuple[JobSpec | None, str]:
    """The job moved to the next instance type, and the remedy's text; (None, why not) when there is none."""
    instance_type, count_or_why, fit = _next_instance(job, quota_of, spot=spot)
    if instance_type is None or fit is None:
        why = "; ".join(count_or_why) if isinstance(count_or_why, list) and count_or_why else "the list is exhausted"
        return None, f"no fallback instance type is left ({why})"
    assert isinstance(count_or_why, int)
    price = price_of(instance_type)
    moved = _with_instance(job, instance_type, count_or_why, fit, price)
    return moved, f"{job['instance_type']} -> {instance_type}"
