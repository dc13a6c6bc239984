"""A task's dependencies against this environment: unmet ones named with the pip command; nothing installed."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from node.tasks.builtin import BUILTIN_TASKS, builtin_bundle
from node.tasks.bundle import read_bundle
from node.tasks.dependencies import check_dependencies
from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest


def _manifest(*dependencies: str) -> TaskManifest:
    return TaskManifest(name="deps", module="task", dependencies=dependencies)


def test_met_requirements_pass_and_markers_are_honoured() -> None:
    numpy = version("numpy")
    check_dependencies(_manifest("numpy", f"numpy=={numpy}", "torch>=2,<3", "NumPy>=1.0",
                                 "surely-not-installed-pkg>=1; python_version < '3'",
                                 "numpy>=999; sys_platform == 'no-such-platform'"))
    for name in BUILTIN_TASKS:
        check_dependencies(read_bundle(builtin_bundle(name))[0])


@pytest.mark.parametrize(
    ("dependencies", "expected"),
    [
        (("numpy>=999",), "numpy {numpy} is installed but the task needs >=999); install it with: pip install 'numpy>=999'"),
        (("surely-not-installed-pkg",), "surely-not-installed-pkg is not installed); install it with: pip install 'surely-not-installed-pkg'"),
        (("torch", "numpy<1", "surely-not-installed-pkg[extra]>=2.1"),
         "numpy {numpy} is installed but the task needs <1; surely-not-installed-pkg is not installed); "
         "install them with: pip install 'numpy<1' 'surely-not-installed-pkg[extra]>=2.1'"),
    ],
)
def test_unmet_requirements_are_named_with_the_pip_command(dependencies: tuple[str, ...], expected: str) -> None:
    with pytest.raises(TaskError) as caught:
        check_dependencies(_manifest(*dependencies))
    message = str(caught.value)
    assert message.startswith("task 'deps' needs packages this environment lacks (")
    assert expected.format(numpy=version("numpy")) in message, message
    assert message.endswith("(fedledger never installs anything itself).") and "\n" not in message
