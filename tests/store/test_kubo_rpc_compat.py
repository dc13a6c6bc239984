"""`fedledger ipfs serve` answers as Kubo's RPC API does, row by row of issue 14, over real HTTP to a
real server process: error shapes and HTTP/1.1, the id/get/dag-export endpoints, every CID
spelling, cat offset/length, add options honoured or refused, pin/ls details, add progress."""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import aleph_cid
import ipfshttpclient
import numpy as np
import pytest
import requests

from ledger.ipfs.car import iter_car
from ledger.ipfs.cid import cid_to_bytes, spell_cid
from ledger.ipfs.multibase import BASE58_BTC, decode_base_x, encode
from ledger.ipfs.store import EmbeddedStore, KuboStore
from ledger.ipfs.unixfs import CHUNK_SIZE, KUBO_DEFAULT, Layout, cid_of_bytes, hash_stream
from tests.fixtures_store import IpfsServer, lose_block, start_ipfs_server, stop_ipfs_server, visible_blocks

pytestmark = pytest.mark.filterwarnings("ignore:The .strict. parameter:FutureWarning")  # ipfshttpclient 0.7 vs urllib3 2


def random_bytes(size: int, seed: int = 14) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def kubo_v0(data: bytes) -> str:
    """Plain `ipfs add` (CIDv0, dag-pb leaves) by aleph-cid, golden-tested against Kubo."""
    hasher = aleph_cid.CidHasher.for_ipfs()
    hasher.update(data)
    return hasher.finalize()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsServer]:
    """A server of its own: the pin listings below are exact."""
    running, process = start_ipfs_server(tmp_path_factory.mktemp("kubo-compat-repo"))
    try:
        yield running
    finally:
        stop_ipfs_server(running, process)


def post(server: IpfsServer, endpoint: str, **kwargs: object) -> requests.Response:
    return requests.post(f"{server.url}/api/v0/{endpoint}", timeout=30, **kwargs)  # type: ignore[arg-type]


def add(server: IpfsServer, data: bytes, query: str = "", name: str = "blob") -> list[dict]:
    """`curl -F file=@blob .../api/v0/add?QUERY`: the NDJSON lines."""
    response = post(server, f"add?{query}", files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def assert_kubo_error(response: requests.Response, text: str) -> None:
    """A command that fails: 500 with Kubo's JSON error body."""
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"Message", "Code", "Type"} and body["Type"] == "error" and body["Code"] == 0
    assert text in body["Message"], body["Message"]


# -- error shapes and HTTP ------------------------------------------------------------------------
def test_requests_kubo_refuses_before_running_answer_400_text_plain(server: IpfsServer) -> None:
    for endpoint, sentence in [
        ("cat", 'argument "ipfs-path" is required'),
        ("pin/add", 'argument "ipfs-path" is required'),
        ("dag/export", 'argument "root" is required'),
        ("cat?arg=x&offset=ten", 'could not convert value "ten" to type "int64" (for option "-offset")'),
        ("add?pin=maybe", 'could not convert value "maybe" to type "bool" (for option "-pin")'),
        ("add", "file argument 'path' is required"),  # no multipart body
        ("pin/ls?type=a&type=b", "expected key type to have only a single value, received [a b]"),
    ]:
        response = post(server, endpoint)
        assert response.status_code == 400, (endpoint, response.text)
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.text == sentence + "\n"


def test_methods_other_than_post_and_unknown_paths_answer_as_kubo(server: IpfsServer) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = requests.request(method, f"{server.url}/api/v0/version", timeout=10)
        assert (response.status_code, response.text) == (405, "405 - Method Not Allowed\n")
        assert response.headers["Allow"] == "OPTIONS, POST"
        assert response.headers["Content-Type"].startswith("text/plain")
    options = requests.options(f"{server.url}/api/v0/add", timeout=10)
    assert options.status_code == 204 and options.headers["Allow"] == "OPTIONS, POST" and options.content == b""
    unknown = post(server, "no/such/command")
    assert (unknown.status_code, unknown.text) == (404, "404 page not found\n")
    assert unknown.headers["Content-Type"].startswith("text/plain")


def test_a_failing_command_answers_500_with_kubos_json_error(server: IpfsServer) -> None:
    assert_kubo_error(post(server, "cat?arg=nonsense"), "not a CID")
    assert_kubo_error(post(server, f"cat?arg={cid_of_bytes(b'absent')}"), "is not in the store")


def test_server_speaks_http_1_1_and_keeps_the_connection(server: IpfsServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    try:
        for _ in range(2):  # the same socket twice: a keep-alive HTTP/1.1 server
            connection.request("POST", "/api/v0/version")
            response = connection.getresponse()
            assert response.version == 11 and response.status == 200
            assert json.loads(response.read())["Version"]
    finally:
        connection.close()


# -- the missing endpoints ------------------------------------------------------------------------
def test_id_answers_a_valid_peer_id_whose_key_it_publishes(server: IpfsServer) -> None:
    identity = ipfshttpclient.Client(server.api).id()
    public_key = base64.b64decode(identity["PublicKey"])
    assert public_key[:4] == bytes([0x08, 0x02, 0x12, 0x21])  # libp2p protobuf: secp256k1, 33-byte key
    # The peer ID is the identity multihash of that key, in base58btc (libp2p's derivation).
    assert decode_base_x(identity["ID"], BASE58_BTC) == bytes([0x00, len(public_key)]) + public_key
    assert identity["ID"].startswith("16Uiu2HA")
    assert post(server, "id").json()["ID"] == identity["ID"]  # stable: kept in the repo
    base36 = post(server, "id?peerid-base=base36").json()["ID"]
    assert base36 == encode("base36", bytes([0x01, 0x72, 0x00, len(public_key)]) + public_key)
    assert_kubo_error(post(server, "id?arg=12D3KooWSomeOtherPeer"), "cannot query information on remote peers")


def test_get_delivers_a_tar_that_ipfshttpclient_extracts(server: IpfsServer, tmp_path: Path) -> None:
    data = random_bytes(CHUNK_SIZE + 3)
    cid = add(server, data)[-1]["Hash"]
    ipfshttpclient.Client(server.api).get(cid, target=str(tmp_path))
    assert (tmp_path / cid).read_bytes() == data
    with tarfile.open(fileobj=io.BytesIO(post(server, f"get?arg={cid}&archive=true&compress=true").content), mode="r:gz") as tar:
        member = tar.getmember(cid)
        assert member.size == len(data) and member.mode == 0o644
        assert tar.extractfile(member).read() == data  # type: ignore[union-attr]
    plain_gzip = post(server, f"get?arg={cid}&compress=true&compression-level=9").content
    assert gzip.decompress(plain_gzip) == data  # compress without archive: the file itself, gzip'd
    assert_kubo_error(post(server, f"get?arg={cid}&compress=true&compression-level=12"), "compression level must be between 1 and 9")


def test_dag_export_writes_each_block_once_in_kubos_order(server: IpfsServer) -> None:
    data = bytes(174 * CHUNK_SIZE + 1)  # zeros: 174 references to one leaf under the first parent
    cid = add(server, data, "cid-version=1")[-1]["Hash"]
    car = post(server, f"dag/export?arg={cid}")
    assert car.status_code == 200
    roots, blocks = iter_car(io.BytesIO(car.content))  # each block checked against its CID
    order = [block for block, _ in blocks]
    zero_leaf, one_byte = cid_of_bytes(bytes(CHUNK_SIZE)), cid_of_bytes(b"\0")
    assert roots == [cid] and order[0] == cid and order[2] == zero_leaf and order[-1] == one_byte
    assert len(order) == 5 == len(set(order))  # root, first parent, the zero leaf once, second parent, 1-byte leaf
    assert len(car.content) < 300_000  # ~271 KB, as `ipfs dag export` writes it (not 45.6 MB)


def test_dag_export_of_a_cidv0_dag_carries_cidv0_block_names(server: IpfsServer) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 1, seed=3)
    cid = add(server, data)[-1]["Hash"]
    assert cid.startswith("Qm")
    content = post(server, f"dag/export?arg={cid}").content
    header_end = 1 + content[0]
    assert bytes([0x00, 0x12, 0x20]) in content[:header_end]  # the root as a CIDv0, as Kubo writes it
    _, blocks = iter_car(io.BytesIO(content))
    assert len(list(blocks)) == 4  # root and three dag-pb leaves, all checked


# -- CIDs: every spelling in, Kubo's spelling out ------------------------------------------------
def test_cat_accepts_every_spelling_of_a_cid(server: IpfsServer) -> None:
    data = random_bytes(3 * CHUNK_SIZE, seed=5)
    v0 = add(server, data)[-1]["Hash"]
    assert v0 == kubo_v0(data)
    canonical = cid_of_bytes(data, KUBO_DEFAULT)
    binary = cid_to_bytes(canonical)
    spellings = [v0, f"/ipfs/{v0}", canonical, canonical.upper(), encode("base58btc", binary),
                 encode("base36", binary), encode("base36upper", binary), encode("base16", binary),
                 encode("base64url", binary)]
    for spelling in spellings:
        response = post(server, f"cat?arg={spelling}")
        assert response.status_code == 200, (spelling, response.text)
        assert response.content == data
    assert post(server, f"cat/{v0}").content == data  # the argument as the last path segment, as Kubo allows


def test_cat_honours_offset_and_length_across_blocks(server: IpfsServer) -> None:
    data = random_bytes(3 * CHUNK_SIZE + 11, seed=6)
    cid = add(server, data, "cid-version=1")[-1]["Hash"]
    client = ipfshttpclient.Client(server.api)
    for offset, length in [(0, None), (1, None), (CHUNK_SIZE - 2, 5), (2 * CHUNK_SIZE, CHUNK_SIZE + 11),
                           (len(data) - 1, 100), (len(data), None), (len(data) + 5, 3), (10, 0)]:
        expected = data[offset:] if length is None else data[offset : offset + length]
        assert client.cat(cid, offset=offset, length=length) == expected, (offset, length)
    assert_kubo_error(post(server, f"cat?arg={cid}&offset=-1"), "cannot specify negative offset")
    assert_kubo_error(post(server, f"cat?arg={cid}&length=-1"), "cannot specify negative length")


# -- add: Kubo's defaults, options honoured or refused -------------------------------------------
def test_add_with_kubos_defaults_gives_kubos_cidv0_and_size(server: IpfsServer, tmp_path: Path) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 9, seed=8)
    line = add(server, data, name="weights.bin")[-1]
    assert line["Name"] == "weights.bin" and line["Hash"] == kubo_v0(data)
    assert line["Size"] == str(hash_stream(io.BytesIO(data), KUBO_DEFAULT).tsize)  # every block's bytes
    path = tmp_path / "update.bin"
    path.write_bytes(data)
    client = ipfshttpclient.Client(server.api)
    assert client.add(str(path))["Hash"] == kubo_v0(data)  # ipfshttpclient's defaults
    # ipfshttpclient's cid_version=1 sends raw-leaves=false: CIDv1 with dag-pb leaves, as Kubo gives it.
    assert client.add(str(path), cid_version=1)["Hash"] == cid_of_bytes(data, Layout(1, False))


def test_only_hash_reports_the_real_size_and_stores_nothing(server: IpfsServer) -> None:
    data = random_bytes(CHUNK_SIZE + 100, seed=9)
    hashed = add(server, data, "only-hash=true")[-1]
    assert hashed["Hash"] == kubo_v0(data) and int(hashed["Size"]) > len(data)
    assert not EmbeddedStore(server.repo).has(cid_of_bytes(data, KUBO_DEFAULT))
    assert add(server, data)[-1] == hashed  # the real add agrees, Size included


@pytest.mark.parametrize(
    ("query", "sentence"),
    [
        ("hash=blake2b-256", "sha2-256 only"),
        ("hash=nonsense", 'unrecognized hash function: "nonsense"'),
        ("cid-version=0&hash=sha3-256", "CIDv0 only supports sha2-256"),
        ("cid-version=2", "unknown CID version: 2"),
        ("inline=true", "inline=true"),
        ("trickle=true", "trickle=true"),
        ("wrap-with-directory=true", "single files only"),
        ("nocopy=true", "either the filestore or the urlstore must be enabled to use nocopy"),
        ("chunker=rabin-16-32-64", "fixed sizes only"),
        ("chunker=size-0", "chunker size must be greater than 0"),
        ("chunker=size-9999999", "may not exceed the maximum chunk size"),
        ("preserve-mtime=true", "no UnixFS metadata"),
        ("to-files=/x", "no MFS"),
        ("cid-base=base2", "unsupported multibase encoding: base2"),
        ("encoding=text", "JSON only"),
    ],
)
def test_options_that_would_change_the_answer_are_refused_not_ignored(server: IpfsServer, query: str, sentence: str) -> None:
    before = visible_blocks(EmbeddedStore(server.repo))
    response = post(server, f"add?{query}", files={"file": ("x", b"refused content")})
    assert_kubo_error(response, sentence)
    assert visible_blocks(EmbeddedStore(server.repo)) == before  # nothing stored


def test_options_that_change_the_cid_are_honoured(server: IpfsServer) -> None:
    data = random_bytes(CHUNK_SIZE + 1, seed=10)
    v1 = cid_of_bytes(data)
    binary = cid_to_bytes(v1)
    assert add(server, data, "cid-version=1&cid-base=base36")[-1]["Hash"] == encode("base36", binary)
    assert add(server, data, "cid-version=1&cid-base=base58btc")[-1]["Hash"] == encode("base58btc", binary)
    v0 = add(server, data, "cid-base=base32")[-1]["Hash"]  # cid-base upgrades a CIDv0 answer, as in Kubo
    assert v0 == cid_of_bytes(data, KUBO_DEFAULT)
    assert add(server, data, "cid-base=base32&upgrade-cidv0-in-output=false")[-1]["Hash"] == kubo_v0(data)
    small = add(server, data, "cid-version=1&chunker=size-1000&max-file-links=3")[-1]["Hash"]
    assert small == cid_of_bytes(data, Layout(1, True, 1000, 3))
    assert add(server, data, "raw-leaves=true")[-1]["Hash"] == spell_cid(cid_of_bytes(data, Layout(0, True)), version=0)


def test_add_progress_sends_kubos_progress_lines(server: IpfsServer) -> None:
    data = random_bytes(3 * CHUNK_SIZE + 5, seed=11)
    lines = add(server, data, "progress=true&cid-version=1", name="big")
    progress, final = lines[:-1], lines[-1]
    assert [line["Bytes"] for line in progress][-1] == len(data)
    assert all(set(line) == {"Name", "Bytes"} and line["Name"] == "big" for line in progress)
    assert len(progress) >= 3  # one every 256 KiB read, and one at the end
    assert final["Hash"] == cid_of_bytes(data)
    assert add(server, b"quiet please", "silent=true") == []


def test_kubo_store_and_plain_ipfshttpclient_still_agree_on_cidv1(server: IpfsServer) -> None:
    client = ipfshttpclient.Client(server.api)
    added = client.add_bytes(b"hello world", opts={"cid-version": 1})
    assert added == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert client.cat(added) == b"hello world"
    assert client.pin.ls(type="recursive")["Keys"][added] == {"Type": "recursive", "Name": ""}
    assert KuboStore(server.api).get(added) == b"hello world"


# -- pins ---------------------------------------------------------------------------------------------
def test_pin_ls_lists_names_types_and_streams_like_kubo(tmp_path: Path) -> None:
    running, process = start_ipfs_server(tmp_path / "repo")  # an empty store: the listings are exact
    try:
        assert post(running, "pin/ls").json() == {}  # Kubo leaves an empty Keys out
        assert KuboStore(running.api).pins() == []
        data = random_bytes(2 * CHUNK_SIZE + 1, seed=12)
        root = add(running, data, "cid-version=1")[-1]["Hash"]
        leaves = [cid_of_bytes(data[i : i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE)]
        keys = post(running, "pin/ls?type=all").json()["Keys"]
        assert keys == {root: {"Type": "recursive", "Name": ""}, **{leaf: {"Type": "indirect", "Name": ""} for leaf in leaves}}
        assert post(running, "pin/ls?type=recursive").json() == {"Keys": {root: {"Type": "recursive", "Name": ""}}}
        assert set(post(running, "pin/ls?type=indirect").json()["Keys"]) == set(leaves)
        assert post(running, "pin/ls?type=direct").json() == {}
        streamed = [json.loads(line) for line in post(running, "pin/ls?stream=true").text.splitlines()]
        assert streamed[0] == {"Cid": root, "Type": "recursive"} and len(streamed) == 4
        assert post(running, f"pin/ls?arg={leaves[0]}").json()["Keys"][leaves[0]]["Type"] == f"indirect through {root}"
        assert_kubo_error(post(running, "pin/ls?type=bogus"),
                          "invalid type 'bogus', must be one of {direct, indirect, recursive, all}")
        assert_kubo_error(post(running, f"pin/ls?arg={cid_of_bytes(b'not pinned')}"), "is not pinned")
        assert_kubo_error(post(running, f"pin/rm?arg={root}&recursive=false"), "is pinned recursively")
        assert_kubo_error(post(running, f"pin/add?arg={root}&recursive=false"), "recursive pins only")
        assert post(running, f"pin/rm?arg={root}").json() == {"Pins": [root]}
        assert post(running, "pin/ls").json() == {}
    finally:
        stop_ipfs_server(running, process)


def test_pin_add_needs_the_whole_dag(tmp_path: Path) -> None:
    running, process = start_ipfs_server(tmp_path / "repo")
    try:
        data = random_bytes(2 * CHUNK_SIZE + 1, seed=13)
        root = add(running, data, "cid-version=1&pin=false")[-1]["Hash"]
        store = EmbeddedStore(running.repo)
        lose_block(store, cid_of_bytes(data[:CHUNK_SIZE]))
        assert_kubo_error(post(running, f"pin/add?arg={root}"), "is not in the store")
        assert store.pins() == []
    finally:
        stop_ipfs_server(running, process)
