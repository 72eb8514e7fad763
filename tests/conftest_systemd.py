"""The ``systemd_sandbox`` fixture: one throwaway systemd (tests/sandbox.py) per test module.

Load it with ``pytest_plugins = ["tests.conftest_systemd"]`` (in the root conftest or a test module).
Skips, saying why, when not root or when unshare/nsenter/setpriv/systemd or cgroup v2 are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox import SystemdSandbox, unavailable_reason


@pytest.fixture(scope="module")
def systemd_sandbox() -> Iterator[SystemdSandbox]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SystemdSandbox() as sandbox:
        yield sandbox
