"""Launch Lambda: a JobSpec -> CreateTrainingJob -> `{job_name, training_job_arn, already_launched}`.

Errors: ResourceLimitReached (ResourceLimitExceeded: retry it later), Throttled (retry it), JobNameConflict,
InvalidHyperparameter, LaunchRejected, ConfigurationError, InvalidRecord (the event is not a JobSpec).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, records, settings, training_job
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create the job's training job (idempotent: a retry of an existing name reports `already_launched`)."""
    job = records.parse(JobSpec, event)
    config = settings.launch_settings()
    request = training_job.create_training_job_request(
        job,
        role_arn=config.sagemaker_role_arn,
        image_uri=config.training_image_uri,
        code_s3_uri=config.code_s3_uri,
        hf_token_secret_arn=config.hf_token_secret_arn,
        data_key_arn=config.data_key_arn,
        region=config.region,
        project=config.project_tag,
    )
    result = training_job.launch(aws.client("sagemaker"), request)
    logger.info("training job launched", extra=result)
    return result
