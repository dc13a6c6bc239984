"""The committed artifact is what the sources compile to, and every contract error has a Python class."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from deploy.compile import collect_sources, compile_with_warnings, sources_sha256
from ledger.chain import contract_errors
from ledger.chain.federation import load_artifact

# Reachable only from a constructor given an over-long EIP-712 name, which ours is not.
UNREACHABLE = {"InvalidShortString()", "StringTooLong(string)"}


@pytest.mark.slow
def test_committed_artifact_matches_a_fresh_compile() -> None:
    committed = load_artifact()
    assert committed["sourcesSha256"] == sources_sha256(collect_sources()), (
        "contracts changed since the artifact was built; run `python -m deploy.compile` and commit contracts/build/"
    )
    fresh, warnings = compile_with_warnings()
    assert warnings == []
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]


def _abi_errors() -> list[str]:
    return [
        f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
        for item in load_artifact()["abi"]
        if item["type"] == "error"
    ]


@pytest.mark.parametrize("signature", [s for s in _abi_errors() if s not in UNREACHABLE])
def test_every_contract_error_has_a_python_class(signature: str) -> None:
    name = signature.split("(")[0]
    cls = getattr(contract_errors, name)
    assert cls.signature == signature


def test_revert_data_decodes_to_the_class_with_named_arguments() -> None:
    data = contract_errors.FederationRoundClosed.selector() + encode(["uint256", "uint8"], [4, 2])
    error = contract_errors.error_from_data(data)
    assert isinstance(error, contract_errors.FederationRoundClosed)
    assert (error.round_id, error.state) == (4, "finalized")
    assert "round 4 is already finalized" in str(error)
    assert contract_errors.error_from_data(keccak(text="Nope()")[:4]) is None
