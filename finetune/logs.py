"""A training job's CloudWatch logs from every host, interleaved by timestamp, as the SageMaker SDK shows them.

SageMaker writes one stream per host and container start to `/aws/sagemaker/TrainingJobs`, named
`<job>/algo-<N>-<epoch seconds>` (a spot job that restarts gets a new stream per host). The SDK's `logs=True` reads
them with `sagemaker.core.logs.multi_stream_iter` (a merge of the streams by timestamp) and keeps a `Position`
(timestamp, events already read at it) per stream so each poll prints only what is new; this module uses those two
pieces of sagemaker-core as they are. The SDK's own polling loop (`sagemaker.core.common_utils._flush_log_streams` /
`logs_for_job`) is private and prints straight to stdout with `print`, so the loop around them is ours: it finds new
streams on every poll (hosts start at different times) and, like the SDK, reads once more after the job has ended
so that the last lines are not lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENDED = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class LogLine:
    """One log event: the host stream it came from (`algo-1-1700000000`), its time (epoch ms) and its message."""

    stream: str
    host: str
    timestamp: int
    message: str


def host_of(stream: str) -> str:
    """`algo-1` of `<job>/algo-1-1700000000` (the part after the job name, without the start time)."""
    tail = stream.rsplit("/", 1)[-1]
    host, _, started = tail.rpartition("-")
    return host if host and started.isdigit() else tail


def job_streams(logs: Any, job_name: str) -> list[str]:
    """The job's log streams, in name order (algo-1 first); none while no container has written a line yet."""
    names: list[str] = []
    try:
        for page in logs.get_paginator("describe_log_streams").paginate(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
        ):
            names.extend(stream["logStreamName"] for stream in page.get("logStreams", []))
    except ClientError as exc:
        # An account's first training job has no log group until its container logs (the SDK ignores this too).
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    return sorted(names)


@dataclass
class LogReader:
    """Reads what is new in a job's streams on each `poll`, merged by timestamp (the SDK's reader and positions)."""

    logs: Any
    job_name: str
    positions: dict[str, Any] = field(default_factory=dict)

    def poll(self) -> Iterator[LogLine]:
        """The events written since the last poll, from every stream found so far, in timestamp order."""
        from sagemaker.core.logs import Position, multi_stream_iter  # import cost (~1 s) only for `finetune logs`

        streams = job_streams(self.logs, self.job_name)
        for stream in streams:
            self.positions.setdefault(stream, Position(timestamp=0, skip=0))
        if not streams:
            return
        for index, event in multi_stream_iter(self.logs, LOG_GROUP, streams, self.positions):
            stream = streams[index]
            # As the SDK: several events may share a millisecond; `skip` counts those already read at it.
            last, skip = self.positions[stream]
            self.positions[stream] = (
                Position(timestamp=last, skip=skip + 1)
                if event["timestamp"] == last
                else Position(timestamp=event["timestamp"], skip=1)
            )
            yield LogLine(stream, host_of(stream), event["timestamp"], event["message"])


def tail(
    logs: Any,
    sagemaker: Any,
    job_name: str,
    emit: Callable[[LogLine], None],
    *,
    follow: bool = False,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Emit the job's log lines; with `follow`, keep polling until the job has ended, then read once more.
    Returns the job's last DescribeTrainingJob answer."""
    reader = LogReader(logs, job_name)
    description = sagemaker.describe_training_job(TrainingJobName=job_name)
    while True:
        ended = description["TrainingJobStatus"] in ENDED
        for line in reader.poll():
            emit(line)
        if ended or not follow:
            return description
        sleep(poll_seconds)
        description = sagemaker.describe_training_job(TrainingJobName=job_name)
