#!/usr/bin/env python3
"""CDK entry point: builds the app from cdk.json context and synthesizes it."""

from stacks.app_builder import build_app

build_app().synth()
