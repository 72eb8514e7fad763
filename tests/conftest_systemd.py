"""The ``systemd_sandbox`` fixture: one throwaway systemd (tests/sandbox.py) per test module.

Load it with ``pytest_plugins = ["tests.conftest_systemd"]`` (in the root conftest or a test module).
Skips, saying why, when not root or when unshare/nsenter/setpriv/systemd or cgroup v2 are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox import REPO, SystemdSandbox, unavailable_reason

# Every service in the sandbox imports pimainteno from this checkout: the venv's interpreter, which
# the rendered units run, may have another checkout installed (an editable install of the main tree).
THIS_CHECKOUT = f'[Service]\nEnvironment="PYTHONPATH={REPO}" PYTHONDONTWRITEBYTECODE=1\n'


@pytest.fixture(scope="module")
def systemd_sandbox() -> Iterator[SystemdSandbox]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SystemdSandbox() as sandbox:
        sandbox.write_unit("service.d/pimainteno-this-checkout.conf", THIS_CHECKOUT)  # a drop-in for all services
        yield sandbox
