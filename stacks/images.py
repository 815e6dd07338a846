"""Hugging Face PyTorch training DLC image URIs, resolved offline by sagemaker-core."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sagemaker.core import image_uris

from stacks.config import Config

_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/(?P<repo>[^:]+):(?P<tag>.+)$"
)


@dataclass(frozen=True)
class TrainingImage:
    """A resolved DLC image and the registry facts IAM needs to scope ECR pulls to it."""

    uri: str
    registry_account: str
    repository: str


def training_image(config: Config) -> TrainingImage:
    """The GPU training image for the configured region and DLC versions (raises if that combination doesn't exist)."""
    uri = image_uris.retrieve(
        framework="huggingface",
        region=config.region,
        version=config.dlc.transformers_version,
        base_framework_version=f"pytorch{config.dlc.pytorch_version}",
        py_version=config.dlc.python_version,
        # Any GPU type selects the GPU image; the same image serves every GPU instance.
        instance_type="ml.g5.xlarge",
        image_scope="training",
    )
    match = _IMAGE_URI.match(uri)
    if match is None:
        raise ValueError(f"unexpected image URI from sagemaker-core: {uri}")
    return TrainingImage(uri=uri, registry_account=match["account"], repository=match["repo"])
