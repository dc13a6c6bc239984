"""Compile contracts/Federation.sol into the committed artifact contracts/build/Federation.json.

py-solc-x drives solc through its standard-JSON interface. A native ``solc`` on PATH is used
when it is the same version as the npm package ``solc``; otherwise the npm package (the official
WebAssembly build) runs behind deploy/solc_standard_json.js, which behaves like
``solc --standard-json``. Either way the input carries every source's text, keyed by one
convention: a source unit name is its path from the repository root, with ``node_modules/``
left out for packages (``@openzeppelin/contracts/...``). Same names, same compiler, same
settings: same bytecode.

Beside the artifact it writes contracts/build/Federation.metadata.json: solc's metadata (compiler
version, settings, each source's keccak256) with each source's text added as ``content``, in
solc's own serialization (sorted keys, no spaces, ASCII), so dropping the ``content`` fields gives
back the exact bytes whose IPFS hash ends the runtime code. ``fedledger deploy`` pins that file;
anyone holding it can rebuild the bytecode, and ledger/chain/code_check.py compares the code at
an address with the artifact (immutables and the metadata hash included).

Run ``python -m deploy.compile`` to rebuild; tests/contracts fail while the artifact is stale.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import solcx

from ledger.errors import ConfigError
from ledger.chain.code_check import METADATA_DOCUMENT, metadata_document, verify_metadata_document
from ledger.chain.federation import ARTIFACT, load_artifact
from ledger.workspace import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "Federation"
MAIN_SOURCE = "contracts/Federation.sol"
NODE_SCRIPT = ROOT / "deploy" / "solc_standard_json.js"
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 10_000},
    "viaIR": True,
    # Neither the metadata nor the AST nor the immutables' places change the bytecode.
    "outputSelection": {
        "*": {
            "*": ["abi", "metadata", "evm.bytecode.object", "evm.deployedBytecode.object",
                  "evm.deployedBytecode.immutableReferences"],
            "": ["ast"],
        }
    },
}

_IMPORT = re.compile(r'^\s*import\s+(?:[^;]*?\bfrom\s+)?"([^"]+)"\s*;', re.MULTILINE)


def _source_path(unit: str) -> Path:
    for candidate in (ROOT / unit, ROOT / "node_modules" / unit):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"the Solidity source {unit} is missing; run `npm ci` at the repository root ({ROOT}).")


def collect_sources(main: str = MAIN_SOURCE) -> dict[str, str]:
    """Every source unit ``main`` needs, by unit name, with its text."""
    sources: dict[str, str] = {}
    pending = [main]
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        text = _source_path(unit).read_text(encoding="utf-8")
        sources[unit] = text
        for target in _IMPORT.findall(text):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
            pending.append(target)
    return dict(sorted(sources.items()))


def sources_sha256(sources: dict[str, str]) -> str:
    """One hash over every unit name and text, in name order."""
    digest = hashlib.sha256()
    for unit, text in sorted(sources.items()):
        digest.update(unit.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def npm_solc_version() -> str:
    package = ROOT / "node_modules" / "solc" / "package.json"
    if not package.is_file():
        raise ConfigError("the npm package solc is missing; run `npm ci` at the repository root.")
    return json.loads(package.read_text())["version"]


def solc_binary() -> Path:
    """A native solc of the npm package's version when on PATH, else the node script."""
    native = shutil.which("solc")
    if native:
        try:
            if solcx.wrapper.get_solc_version(native) == solcx.wrapper.Version(npm_solc_version()):
                return Path(native)
        except (OSError, subprocess.SubprocessError, solcx.exceptions.SolcError):
            pass
    if shutil.which("node") is None:
        raise ConfigError("compiling needs Node.js (for the npm solc) or a native solc; install Node.js >= 20.")
    npm_solc_version()
    return NODE_SCRIPT


def _immutable_names(output: dict[str, Any], ids: set[str]) -> dict[str, str]:
    """``Contract.variable`` of each immutable's AST id, from the compiler's ASTs."""
    names: dict[str, str] = {}

    def walk(node: Any, contract: str) -> None:
        if isinstance(node, dict):
            if node.get("nodeType") == "ContractDefinition":
                contract = node.get("name", contract)
            if node.get("nodeType") == "VariableDeclaration" and str(node.get("id")) in ids:
                names[str(node["id"])] = f"{contract}.{node['name']}"
            for value in node.values():
                walk(value, contract)
        elif isinstance(node, list):
            for value in node:
                walk(value, contract)

    for source in output.get("sources", {}).values():
        walk(source.get("ast"), "")
    return dict(sorted(names.items()))


def compile_with_warnings() -> tuple[dict[str, Any], list[str]]:
    """The artifact document (its ``metadata``: solc's metadata string) and the compiler's warnings about our own sources."""
    sources = collect_sources()
    binary = solc_binary()
    standard = {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": SETTINGS,
    }
    output = solcx.compile_standard(standard, solc_binary=binary)
    contract = output["contracts"][MAIN_SOURCE][CONTRACT]
    warnings = [
        error["formattedMessage"]
        for error in output.get("errors", [])
        if error.get("sourceLocation", {}).get("file", "").startswith("contracts/")
    ]
    references = contract["evm"]["deployedBytecode"].get("immutableReferences", {})
    artifact = {
        "contractName": CONTRACT,
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
        "compiler": {
            "version": str(solcx.wrapper.get_solc_version(binary, with_commit_hash=True)),
            "settings": {key: value for key, value in SETTINGS.items() if key != "outputSelection"},
        },
        "sourcesSha256": sources_sha256(sources),
        "sources": sorted(sources),
        "immutableReferences": references,
        "immutables": _immutable_names(output, set(references)),
        "metadata": contract["metadata"],
    }
    return artifact, warnings


def write_artifact(artifact: dict[str, Any]) -> Path:
    """Write the artifact (without solc's metadata string) and the metadata document beside it.

    ConfigError, before writing anything, when the metadata document would not give back the
    metadata hash at the end of the runtime code (a solc whose serialization differs from ours).
    """
    artifact = dict(artifact)
    document = metadata_document(artifact.pop("metadata"), collect_sources())
    code = bytes.fromhex(artifact["deployedBytecode"].removeprefix("0x"))
    problem = verify_metadata_document(document, code)
    if problem is not None:
        raise ConfigError(f"the compiler's metadata cannot be pinned as it is: {problem}; report this with the solc version.")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(ARTIFACT, (json.dumps(artifact, indent=1, sort_keys=True) + "\n").encode())
    atomic_write_bytes(METADATA_DOCUMENT, document)
    load_artifact.cache_clear()
    return ARTIFACT


def main() -> None:
    artifact, warnings = compile_with_warnings()
    for warning in warnings:
        print(warning, file=sys.stderr)
    path = write_artifact(artifact)
    size = (len(artifact["deployedBytecode"]) - 2) // 2
    print(f"wrote {path.relative_to(ROOT)} (solc {artifact['compiler']['version']}, runtime {size} bytes)")


if __name__ == "__main__":
    main()
