import os

import pytest
from stack import Stack
from upstream import ScriptedUpstream


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream() as up:
        yield up


def make_stack(request, tmp_path_factory, upstream, policy_text, **kw):
    stack = Stack(str(tmp_path_factory.mktemp("stack")), policy_text, upstream.url, **kw).start()
    request.addfinalizer(lambda: _finalize(request, stack))
    return stack


def _finalize(request, stack):
    stack.stop()
    failed = any(getattr(item, "rep_call", None) and item.rep_call.failed for item in request.session.items
                 if item.module is request.module)
    if failed or os.environ.get("EXTPROC_TEST_LOGS"):
        for name in stack.procs:
            print(f"\n===== {name} log ({stack.workdir}) =====\n{stack.log(name)[-20000:]}")


@pytest.fixture(autouse=True)
def _reset_upstream(upstream):
    upstream.reset()
    yield
