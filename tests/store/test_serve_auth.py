"""Who may change a served store: `fedledger ipfs serve` with Kubo's ``API.Authorizations``.

The server runs in this process (``make_server`` on 127.0.0.1, the one ``ipfs serve`` runs); the
clients are ipfshttpclient (through ``KuboStore``), the JS ``kubo-rpc-client`` and plain HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from ledger.errors import ConfigError, StoreError
from ledger.ipfs.auth import DENIED, READ_ONLY_PATHS, Authorizations, parse_authorizations
from ledger.ipfs.server import make_server
from ledger.ipfs.store import EmbeddedStore, KuboStore, open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace
from tests.fixtures_cli import run_in_process as cli
from tests.fixtures_store import start_ipfs_server, stop_ipfs_server

ADMIN, READER, OTHER = "admin-secret-0123", "reader-secret-4567", "other-secret-89ab"
AUTHORIZATIONS = {
    "admin": {"AuthSecret": f"bearer:{ADMIN}", "AllowedPaths": ["/api/v0"]},
    "auditor": {"AuthSecret": f"bearer:{READER}", "AllowedPaths": list(READ_ONLY_PATHS)},
    "basic": {"AuthSecret": "basic:carol:pa:ss", "AllowedPaths": ["/api/v0/cat"]},
    "ids": {"AuthSecret": f"bearer:{OTHER}", "AllowedPaths": ["/api/v0/id"]},
}
JS_SCRIPT = Path(__file__).parent / "js" / "kubo_auth_client.mjs"


@contextmanager
def served(repo: Path, authorizations: Authorizations | None) -> Iterator[str]:
    server = make_server(EmbeddedStore(repo), port=0, authorizations=authorizations)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def authorizations() -> Authorizations:
    return parse_authorizations(json.dumps(AUTHORIZATIONS), source="the test")


def test_without_a_token_add_and_unpin_are_refused_and_a_read_only_token_reads_but_cannot_unpin(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with served(repo, authorizations()) as url:
        admin = KuboStore(url, auth=f"bearer:{ADMIN}")
        cid = admin.add_bytes(b"a federation's update")
        assert admin.pins() == [cid]

        nobody = KuboStore(url)
        with pytest.raises(StoreError, match=r"denied access to add content \(403\).*FEDLEDGER_STORE_AUTH"):
            nobody.add_bytes(b"junk")
        with pytest.raises(StoreError, match="denied access to unpin"):
            nobody.unpin(cid)
        with pytest.raises(StoreError, match="denied access"):
            nobody.get(cid)

        reader = KuboStore(url, auth=f"bearer:{READER}")
        assert reader.get(cid) == b"a federation's update"
        assert reader.has(cid) and reader.pins() == [cid]
        assert [block for block, _ in reader.iter_dag(cid)] == [cid]
        for change in (lambda: reader.unpin(cid), lambda: reader.add_bytes(b"junk"), lambda: reader.pin(cid)):
            with pytest.raises(StoreError, match=r"\(403\)"):
                change()
        with pytest.raises(StoreError, match="denied access"):
            KuboStore(url, auth="bearer:not-a-name-here").get(cid)

        # Kubo's answers, byte for byte: 403 text/plain with its sentence, for no header, a wrong one, a path not
        # allowed, and any method; version is open to every valid secret; basic auth as Kubo converts it.
        for headers, path in (({}, "pin/rm"), ({"Authorization": f"Bearer {READER}x"}, "cat"),
                              ({"Authorization": f"Bearer {OTHER}"}, "cat"), ({}, "version")):
            refused = requests.post(f"{url}/api/v0/{path}?arg={cid}", headers=headers, timeout=10)
            assert (refused.status_code, refused.text) == (403, DENIED + "\n")
            assert refused.headers["Content-Type"].startswith("text/plain")
        assert requests.options(f"{url}/api/v0/add", timeout=10).status_code == 403
        assert requests.post(f"{url}/api/v0/version", headers={"Authorization": f"Bearer {OTHER}"}, timeout=10).ok
        assert requests.post(f"{url}/api/v0/id", headers={"Authorization": f"Bearer {OTHER}"}, timeout=10).ok
        basic = requests.post(f"{url}/api/v0/cat?arg={cid}", auth=("carol", "pa:ss"), timeout=10)
        assert basic.content == b"a federation's update"
        assert requests.post(f"{url}/api/v0/cat?arg={cid}", auth=("carol", "pa:sS"), timeout=10).status_code == 403
        # A refused upload is not read beyond 256 KiB, and adds nothing.
        big = requests.post(f"{url}/api/v0/add", files={"file": b"x" * (1 << 20)}, timeout=10)
        assert big.status_code == 403
    assert EmbeddedStore(repo).pins() == [cid]  # nothing the refused clients asked was done
    assert not EmbeddedStore(repo).has(cid_of_bytes(b"junk"))


def test_the_js_kubo_client_sends_the_token_and_is_refused_without_it(tmp_path: Path) -> None:
    data = tmp_path / "update.bin"
    data.write_bytes(os.urandom(1000))
    with served(tmp_path / "repo", authorizations()) as url:
        result = subprocess.run(["node", str(JS_SCRIPT), url, str(data), ADMIN, READER],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)
        store = EmbeddedStore(tmp_path / "repo")
        assert got["catLength"] == 1000 and got["readerCatLength"] == 1000
        assert store.pins() == [got["cid"]]  # the reader's pin.rm and the token-less add changed nothing
        assert "403" in got["noTokenAddError"] or "Access Denied" in got["noTokenAddError"]
        assert "Access Denied" in got["readerRmError"]


def test_ipfs_serve_takes_authorizations_from_the_environment_and_the_store_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, process = start_ipfs_server(tmp_path / "repo", env={"FEDLEDGER_IPFS_AUTHORIZATIONS": json.dumps(AUTHORIZATIONS)})
    try:
        workspace = Workspace.init(tmp_path / "ws")
        workspace.set("store", "backend", "kubo")
        workspace.set("store", "api", server.api)
        workspace.save()
        with pytest.raises(StoreError, match="denied access"):
            open_store(Workspace.find(workspace.root)).add_bytes(b"x")
        monkeypatch.setenv("FEDLEDGER_STORE_AUTH", f"bearer:{ADMIN}")
        cid = open_store(Workspace.find(workspace.root)).add_bytes(b"x")
        assert "FEDLEDGER_STORE_AUTH" not in workspace.config_path.read_text() and ADMIN not in workspace.config_path.read_text()
        monkeypatch.setenv("FEDLEDGER_STORE_AUTH", f"bearer:{READER}")
        pin_rm = cli("ipfs", "pin", "rm", cid, "--ipfs-api", server.api, env={"FEDLEDGER_STORE_AUTH": f"bearer:{READER}"})
        assert pin_rm.exit_code == 1 and "denied access to unpin" in pin_rm.stderr
        # A secret written into fedledger.toml is refused, not sent.
        workspace.set("store", "auth", f"bearer:{ADMIN}")
        workspace.save()
        with pytest.raises(ConfigError, match=r"in clear \(\[store\] auth\).*FEDLEDGER_STORE_AUTH"):
            open_store(Workspace.find(workspace.root))
    finally:
        stop_ipfs_server(server, process)
    assert EmbeddedStore(tmp_path / "repo").pins() == [cid]


def test_a_public_host_without_authorizations_is_refused_unless_insecure(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: even a broken check could not serve on it.
    repo = str(tmp_path / "repo")
    refused = cli("ipfs", "serve", "--host", "192.0.2.1", "--port", "0", "--repo", repo)
    assert refused.exit_code != 0
    assert "would let anyone who reaches port 0 add and unpin content; give --auth-file" in refused.stderr
    assert "--insecure" in refused.stderr and not (tmp_path / "repo").exists()
    insecure = cli("ipfs", "serve", "--host", "192.0.2.1", "--port", "0", "--repo", repo, "--insecure")
    assert insecure.exit_code != 0 and "cannot listen on 192.0.2.1:0" in insecure.stderr  # past the check
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps(AUTHORIZATIONS))
    auth_file.chmod(0o644)
    readable = cli("ipfs", "serve", "--host", "192.0.2.1", "--port", "0", "--repo", repo, "--auth-file", str(auth_file))
    assert readable.exit_code != 0 and f"chmod 600 {auth_file}" in readable.stderr
    auth_file.chmod(0o600)
    allowed = cli("ipfs", "serve", "--host", "192.0.2.1", "--port", "0", "--repo", repo, "--auth-file", str(auth_file))
    assert allowed.exit_code != 0 and "cannot listen on 192.0.2.1:0" in allowed.stderr


@pytest.mark.parametrize("text, words", [
    ("{", "is not JSON"),
    ("{}", "names no authorizations"),
    ('{"a": {"AuthSecret": "digest:x", "AllowedPaths": ["/api/v0"]}}', "neither bearer nor basic"),
    ('{"a": {"AuthSecret": "bearer:x", "AllowedPaths": ["/cat"]}}', "each starting with /api/v0"),
    ('{"a": {"AuthSecret": "bearer:x", "AllowedPaths": []}, "b": {"AuthSecret": "x", "AllowedPaths": []}}', "same secret"),
])
def test_bad_authorizations_are_refused_with_a_sentence(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_authorizations(text, source="$FEDLEDGER_IPFS_AUTHORIZATIONS")


def test_the_header_is_compared_in_constant_time_against_every_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.ipfs.auth as auth

    compared: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    names = authorizations()
    assert names.allows(f"Bearer {ADMIN}", "/api/v0/pin/rm")  # the first name: the others are compared all the same
    assert not names.allows(f"Bearer {ADMIN}x", "/api/v0/cat")
    assert not names.allows(None, "/api/v0/cat")
    # Digests of equal length, so neither which name matched nor the secret's length shows in the time taken.
    assert compared == [(32, 32)] * (3 * len(AUTHORIZATIONS))
