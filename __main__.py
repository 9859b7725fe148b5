"""Pulumi entry point (`pulumi preview/up` and the automation driver both run this)."""

from infra.program import run

run()
