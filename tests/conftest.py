"""Fixtures shared across the test tree."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bundled_tasks():
    """The bundled tasks with their environments and workspaces prepared (once, in the usual cache).

    The first run on a machine builds three virtualenvs with pip (the one step that uses the network).
    """
    from swe_rl.paths import cache_dir
    from swe_rl.sandbox.environments import prepare_environment, prepare_workspace
    from swe_rl.tasks.loaders import load_tasks

    tasks = load_tasks("bundled")
    for task in tasks:
        prepare_environment(task, cache_dir())
        prepare_workspace(task, cache_dir())
    return tasks
