# The two commands of the README. Both set everything up first (idempotent).
.PHONY: demo test setup

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/swe-rl demo

test: setup
	.venv/bin/python -m pytest
