"""An agreement document that names a Flower App Bundle: its canonical bytes, its strict reading, the FAB
file check, and ``agreement publish --flower-app``'s refusals (in-process, refused before any chain or store)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from ledger.errors import InvalidInputError
from ledger.ipfs.store import EmbeddedStore, open_store
from ledger.workspace import Workspace
from node.tasks.agreement import (
    FlowerApp,
    agreement_document,
    agreement_task,
    fab_sha256,
    parse_agreement,
    read_agreement,
    read_flower_app,
)
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok, run_in_process

TASK = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
TERMS = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
FAB_CID = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
SHA = "3eb70f6ed8a80e73134cdb79155f57db7648e9f4e712ad84a06ad046b3f677af"
EXAMPLE_APP = Path(__file__).resolve().parents[2] / "node" / "flower" / "example_app"


def test_a_document_without_a_flower_app_keeps_its_bytes() -> None:
    assert agreement_document(TASK, TERMS) == (
        b'{"format":"fedledger-agreement/1","task":"' + TASK.encode() + b'","terms":"' + TERMS.encode() + b'"}'
    )


def test_a_document_names_a_flower_app_with_or_without_a_task() -> None:
    app = FlowerApp(sha256=SHA, cid=FAB_CID)  # type: ignore[arg-type]
    both = agreement_document(TASK, TERMS, flower_app=app)
    assert both == (b'{"flower_app":{"cid":"' + FAB_CID.encode() + b'","sha256":"' + SHA.encode()
                    + b'"},"format":"fedledger-agreement/1","task":"' + TASK.encode() + b'","terms":"'
                    + TERMS.encode() + b'"}')
    parsed = parse_agreement(both)
    assert parsed is not None and (parsed.task, parsed.terms, parsed.flower_app) == (TASK, TERMS, app)
    assert parsed.to_bytes() == both
    only_app = parse_agreement(agreement_document(None, TERMS, flower_app=app))
    assert only_app is not None and only_app.task is None and only_app.flower_app == app
    with pytest.raises(InvalidInputError, match="names a task, a Flower app or both"):
        agreement_document(None, TERMS)


@pytest.mark.parametrize("data, why", [
    (b'{"flower_app":{"cid":"' + FAB_CID.encode() + b'","sha256":"' + SHA.upper().encode()
     + b'"},"format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}', "is not 64 lowercase hex digits"),
    (b'{"flower_app":{"cid":"' + FAB_CID.encode() + b'","sha256":"' + SHA[:63].encode()
     + b'"},"format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}', "is not 64 lowercase hex digits"),
    (b'{"flower_app":{"cid":"' + FAB_CID.encode() + b'","sha256":"' + SHA.encode()
     + b'","size":1},"format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}', "exactly the fields cid and sha256"),
    (b'{"flower_app":"' + SHA.encode() + b'","format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}',
     "exactly the fields cid and sha256"),
    (b'{"flower_app":{"cid":"not-a-cid","sha256":"' + SHA.encode()
     + b'"},"format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}', "flower_app cid is not a CID"),
    (b'{"format":"fedledger-agreement/1","terms":"' + TERMS.encode() + b'"}', "task, flower_app or both"),
    (b'{"format": "fedledger-agreement/1", "flower_app": {"cid": "' + FAB_CID.encode() + b'", "sha256": "'
     + SHA.encode() + b'"}, "terms": "' + TERMS.encode() + b'"}', "not in canonical form"),
])
def test_a_flower_app_entry_is_read_strictly(data: bytes, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why):
        parse_agreement(data)


def test_the_store_reads_the_flower_app_and_no_task_from_a_document_naming_only_an_app(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    app = FlowerApp(sha256=SHA, cid=FAB_CID)  # type: ignore[arg-type]
    terms = store.add_bytes(agreement_document(None, TERMS, flower_app=app))
    document = read_agreement(store, terms)
    assert document is not None and document.flower_app == app
    assert agreement_task(store, terms) is None


def test_the_fab_hash_is_the_one_flwr_build_names_the_file_by(tmp_path: Path) -> None:
    build = pytest.importorskip("flwr.cli.build")
    app = tmp_path / "digitsapp"
    import shutil

    shutil.copytree(EXAMPLE_APP, app)
    fab = build.build_fab_from_disk(app)
    path = tmp_path / "app.fab"
    path.write_bytes(fab)
    assert read_flower_app(path) == fab
    digest = fab_sha256(fab)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    config = {"tool": {"flwr": {"app": {"publisher": "fedledger"}}}, "project": {"name": "x", "version": "1"}}
    assert build.get_fab_filename(config, digest).endswith(f".{digest[:8]}.fab")  # flwr build's own file name


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("content, said", [
    (b"print('not a zip')\n", "is not a Flower App Bundle (not a zip file"),
    (_zip({"pyproject.toml": b"[project]\n"}), "is a zip file but not a Flower App Bundle (it lacks .info/CONTENT)"),
    (_zip({".info/CONTENT": b""}), "is a zip file but not a Flower App Bundle (it lacks pyproject.toml)"),
])
def test_publish_refuses_a_file_that_is_not_a_fab_before_anything_is_sent(
    tmp_path: Path, content: bytes, said: str
) -> None:
    terms, fab = tmp_path / "terms.md", tmp_path / "app.fab"
    terms.write_text("terms\n")
    fab.write_bytes(content)
    refused = run_in_process("agreement", "publish", str(terms), "--flower-app", str(fab),
                             "--workdir", str(tmp_path / "no-workspace-needed"))
    assert refused.exit_code == 1
    line = refused.error_line()
    assert f"{fab} {said}" in line and "give the .fab file that `flwr build` wrote" in line


def test_publish_refuses_a_missing_fab_file(tmp_path: Path) -> None:
    terms = tmp_path / "terms.md"
    terms.write_text("terms\n")
    refused = run_in_process("agreement", "publish", str(terms), "--flower-app", str(tmp_path / "nope.fab"),
                             "--workdir", str(tmp_path / "ws"))
    assert refused.exit_code == 1 and f"no FAB file at {tmp_path / 'nope.fab'}" in refused.error_line()


def test_publish_help_names_the_flower_app_option() -> None:
    assert "--flower-app" in ok(run_in_process("agreement", "publish", "--help")).stdout


@pytest.mark.anvil
def test_publish_pins_the_fab_and_show_prints_its_hash(chain: TestChain, tmp_path: Path) -> None:
    build = pytest.importorskip("flwr.cli.build")
    fab = tmp_path / "app.fab"
    fab.write_bytes(build.build_fab_from_disk(EXAMPLE_APP))
    terms = tmp_path / "terms.md"
    terms.write_text("Each party runs the Flower app this agreement names.\n")
    rpc = chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    ok(run_in_process("init", str(tmp_path / "ws"), "--rpc", rpc))
    w = ("--workdir", str(tmp_path / "ws"))
    ok(run_in_process("deploy", *w))
    published = ok(run_in_process("agreement", "publish", str(terms), "--flower-app", str(fab), "--json", *w)).json()
    digest = hashlib.sha256(fab.read_bytes()).hexdigest()
    assert published["flower_app"]["sha256"] == digest and published["task"] is None
    store = open_store(Workspace.load(tmp_path / "ws"))
    assert store.get(published["flower_app"]["cid"]) == fab.read_bytes()  # any party reads the exact FAB
    assert store.get(published["terms_cid"]) == agreement_document(
        None, published["terms_file_cid"], flower_app=FlowerApp(sha256=digest, cid=published["flower_app"]["cid"]))
    shown = ok(run_in_process("agreement", "show", "--json", *w)).json()
    assert shown["flower_app"] == published["flower_app"] and shown["terms_cid"] == published["terms_cid"]
    line = ok(run_in_process("agreement", "show", *w)).stderr  # the human line goes to stderr
    assert f"Flower app sha256 {digest} (FAB {published['flower_app']['cid']})" in line
