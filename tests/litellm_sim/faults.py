"""Fault injection: each fault changes what a correctly working LiteLLM would have left, at the layer it breaks."""

from __future__ import annotations


def before_run(sim, world, traffic, faults, applied, now) -> None:
    pass


def after_run(sim, world, outcome, faults, applied, now) -> None:
    pass


def on_rows(world, rows, faults, applied, now) -> None:
    pass
