"""Operator tooling for the fine-tuning stack: the `finetune` CLI and the offline runner."""
