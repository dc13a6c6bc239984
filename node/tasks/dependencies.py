"""A task's ``[project] dependencies`` against the running environment: checked, never installed.

A node may be offline, and what gets installed on a party's machine is the party's decision: a
missing package or a version outside the declared range is named with the pip command that would
fix it, and nothing runs until it is.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest


def pip_argument(requirement: Requirement) -> str:
    """The requirement as one pip argument, without its environment marker (it holds here)."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    if requirement.url:
        return f"{requirement.name}{extras} @ {requirement.url}"
    return f"{requirement.name}{extras}{requirement.specifier}"


def unmet_requirement(text: str) -> str | None:
    """Why ``text`` is not met here (None when it is, or when its marker excludes this environment)."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        return f"{text!r} is not a valid requirement ({' '.join(str(error).split())})"
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        return None
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        return f"{requirement.name} is not installed"
    if not requirement.specifier:
        return None
    try:
        parsed = Version(installed)
    except InvalidVersion:
        return f"{requirement.name} {installed} has a version pip cannot compare with {requirement.specifier}"
    if not requirement.specifier.contains(parsed, prereleases=True):
        return f"{requirement.name} {installed} is installed but the task needs {requirement.specifier}"
    return None


def check_dependencies(manifest: TaskManifest) -> None:
    """TaskError naming every requirement of ``manifest`` that this environment does not meet, with
    the pip command that meets them all; returns quietly when all are met."""
    problems: list[str] = []
    fixes: list[str] = []
    for text in manifest.dependencies:
        problem = unmet_requirement(text)
        if problem is None:
            continue
        problems.append(problem)
        try:
            fixes.append(f"'{pip_argument(Requirement(text))}'")
        except InvalidRequirement:
            pass
    if not problems:
        return
    fix = f"install {'it' if len(problems) == 1 else 'them'} with: pip install {' '.join(fixes)}" if fixes else "fix its [project] dependencies"
    raise TaskError(
        f"task {manifest.name!r} needs packages this environment lacks ({'; '.join(problems)}); {fix} "
        "(fedledger never installs anything itself)."
    )
