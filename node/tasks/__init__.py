"""User tasks: a party's own model, data and training code, packed into a deterministic bundle.

A task is a folder that is a Python package declared in its ``pyproject.toml`` under
``[tool.fedledger.task]`` (:mod:`node.tasks.spec`). ``pack_task`` turns it into a bundle whose bytes
(and so CID) depend only on its files (:mod:`node.tasks.bundle`); ``unpack_task`` verifies a bundle
from a stranger and caches it by CID; ``check_dependencies`` compares its declared requirements with
the running environment (:mod:`node.tasks.dependencies`); ``TaskRunner`` runs its hooks in a separate
process that holds no key (:mod:`node.tasks.runner`, :mod:`node.tasks.worker`).

This package imports neither torch nor the task's code: the CLI reads specs and bundles cheaply.
"""
