"""Offline helpers: tiny models and local assets that let the whole pipeline run on a CPU without the Hub."""
