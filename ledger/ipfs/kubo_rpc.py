"""What a Kubo RPC request means here: each command's arguments and options, read as Kubo reads
them, and each option honoured or refused, never ignored where Kubo would answer otherwise.

Query strings are parsed as go-ipfs-cmds parses them: ``arg`` values are the arguments, a known
option must have one value of its type (else :class:`ParseError`, which the server answers 400
text/plain with Kubo's sentence), an unknown option is passed over. A required argument that is
missing is a ParseError too. What Kubo's command itself would refuse, or what this store cannot do
the way Kubo would, is :class:`Refused` (500 with Kubo's JSON error body), in Kubo's words where
Kubo has them. The README's table of endpoints and options is this module in prose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ledger.ipfs import multibase
from ledger.ipfs.cid import spell_cid
from ledger.types import Cid
from ledger.ipfs.unixfs import CHUNK_SIZE, MAX_LINKS, Layout

CHUNK_SIZE_LIMIT = 2 * 1024 * 1024 - 256  # boxo's chunker limit: 2 MiB blocks less framing
INLINE_LIMIT_MAX = 128  # boxo verifcid.DefaultMaxIdentityDigestSize
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class ParseError(Exception):
    """Kubo refuses the request before running it: 400, text/plain."""


class Refused(Exception):
    """The command does not run as asked: 500 with Kubo's JSON error body."""


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]
    kind: str  # Go's type name as Kubo prints it: bool, int, int64, uint, string, array
    default: object = None


@dataclass(frozen=True)
class Command:
    args: tuple[tuple[str, bool, bool], ...] = ()  # (name, required, variadic)
    options: tuple[Option, ...] = ()
    file_arg: str | None = None  # the name of a required multipart file argument


def _opts(*specs: str, **defaults: object) -> tuple[Option, ...]:
    """``"name,alias:kind"`` specs; keyword defaults by the first name with ``_`` for ``-``."""
    out = []
    for spec in specs:
        names, kind = spec.split(":")
        first = names.split(",")[0]
        out.append(Option(tuple(names.split(",")), kind, defaults.get(first.replace("-", "_"))))
    return tuple(out)


GLOBAL = _opts(
    "config,c:string", "debug,D:bool", "help:bool", "h:bool", "local,L:bool", "offline:bool", "api:string",
    "api-auth:string", "upgrade-cidv0-in-output:bool", "cid-base:string", "repo-dir:string", "config-file:string",
    "timeout:string", "encoding,enc:string", "stream-channels:bool", encoding="json",
)

COMMANDS: dict[str, Command] = {
    "add": Command(file_arg="path", options=_opts(
        "recursive,r:bool", "dereference-args:bool", "stdin-name:string", "hidden,H:bool", "ignore:array",
        "ignore-rules-path:string", "empty-dirs,E:bool", "dereference-symlinks:bool", "quiet,q:bool",
        "quieter,Q:bool", "silent:bool", "progress,p:bool", "only-hash,n:bool", "wrap-with-directory,w:bool",
        "pin:bool", "pin-name:string", "to-files:string", "cid-version:int", "hash:string", "raw-leaves:bool",
        "chunker,s:string", "trickle,t:bool", "max-file-links:int", "max-directory-links:int",
        "max-hamt-fanout:int", "inline:bool", "inline-limit:int", "nocopy:bool", "fscache:bool",
        "preserve-mode:bool", "preserve-mtime:bool", "mode:uint", "mtime:int64", "mtime-nsecs:uint",
        "fast-provide-root:bool", "fast-provide-dag:bool", "fast-provide-wait:bool",
        pin=True, inline_limit=32)),
    "cat": Command(args=(("ipfs-path", True, True),), options=_opts("offset,o:int64", "length,l:int64", "progress,p:bool")),
    "get": Command(args=(("ipfs-path", True, False),), options=_opts(
        "output,o:string", "archive,a:bool", "compress,C:bool", "compression-level,l:int", "progress,p:bool", progress=True)),
    "dag/export": Command(args=(("root", True, False),), options=_opts("progress,p:bool")),
    "block/get": Command(args=(("cid", True, False),)),
    "block/stat": Command(args=(("cid", True, False),)),
    "pin/add": Command(args=(("ipfs-path", True, True),), options=_opts(
        "recursive,r:bool", "name,n:string", "progress:bool", "fast-provide-root:bool", "fast-provide-dag:bool",
        "fast-provide-wait:bool", recursive=True)),
    "pin/rm": Command(args=(("ipfs-path", True, True),), options=_opts("recursive,r:bool", recursive=True)),
    "pin/ls": Command(args=(("ipfs-path", False, True),), options=_opts(
        "type,t:string", "quiet,q:bool", "name,n:string", "stream,s:bool", "names:bool", type="all")),
    "id": Command(args=(("peerid", False, False),), options=_opts("format,f:string", "peerid-base:string", peerid_base="b58mh")),
    "version": Command(options=_opts("number,n:bool", "commit:bool", "repo:bool", "all:bool")),
}


@dataclass
class Request:
    """A parsed request: its arguments and its options by their first name (defaults filled in)."""

    args: list[str]
    options: dict[str, object]
    given: set[str] = field(default_factory=set)

    def value(self, name: str) -> object:
        return self.options.get(name)


def _convert(option: Option, key: str, text: str) -> object:
    if option.kind == "string":
        return text
    value: object
    if option.kind == "bool" and text in _TRUE | _FALSE:
        value = text in _TRUE
    elif option.kind in ("int", "int64", "uint") and re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if option.kind == "uint" and value < 0:
            value = None
    else:
        value = None
    if value is None:
        shown = f'value "{text}"' if text else "empty value"
        raise ParseError(f'could not convert {shown} to type "{option.kind}" (for option "-{key}")')
    return value


def parse(command: str, query: Mapping[str, list[str]], path_args: Sequence[str] = ()) -> Request:
    """The request's arguments and options, as go-ipfs-cmds would read them; ParseError in its words."""
    spec = COMMANDS[command]
    known = {name: option for option in (*GLOBAL, *spec.options) for name in option.names}
    args = list(path_args)
    options: dict[str, object] = {}
    given: set[str] = set()
    for key, values in query.items():
        if key == "arg":
            args += values
            continue
        option = known.get(key)
        if option is None:
            continue  # Kubo passes unknown options over
        if option.kind == "array":
            options[option.names[0]] = list(values)
        else:
            if len(values) > 1:
                raise ParseError(f"expected key {option.names[0]} to have only a single value, received [{' '.join(values)}]")
            if option.names[0] in given:
                raise ParseError(f'duplicate command options were provided ("{key}" and "{option.names[0]}")')
            options[option.names[0]] = _convert(option, key, values[0])
        given.add(option.names[0])
    for name, required, _ in spec.args:
        if required and not args:
            raise ParseError(f'argument "{name}" is required')
    for option in (*GLOBAL, *spec.options):
        if option.names[0] not in options and option.default is not None:
            options[option.names[0]] = option.default
    return Request(args, options, given)


# -- CID spellings in answers -------------------------------------------------------------------
@dataclass(frozen=True)
class CidEncoder:
    """Kubo's output encoder: CIDv1 in ``base``; a CIDv0 stays one unless ``upgrade`` (as ``cid-base`` implies)."""

    base: str = "base32"
    upgrade: bool = False

    def spell(self, cid: Cid, version: int = 1) -> str:
        if version == 0 and not self.upgrade:
            return spell_cid(cid, version=0)
        return spell_cid(cid, version=1, base=self.base)


def cid_encoder(request: Request) -> CidEncoder:
    """``cid-base`` (which upgrades CIDv0 in output, unless ``upgrade-cidv0-in-output=false``)."""
    base, upgrade = "base32", False
    name = request.value("cid-base")
    if name:
        try:
            base = multibase.base_named(str(name)).name
        except multibase.MultibaseError as error:
            raise Refused(str(error)) from None
        upgrade = True
    if "upgrade-cidv0-in-output" in request.given:
        upgrade = bool(request.value("upgrade-cidv0-in-output"))
    return CidEncoder(base, upgrade)


def check_encoding(request: Request) -> None:
    """Answers are JSON (Kubo's default ``encoding``); Kubo's text encodings are not served."""
    if str(request.value("encoding")).lower() != "json":
        raise Refused(f"this server answers in JSON only; encoding={request.value('encoding')} is not served, leave it unset.")


# -- add -----------------------------------------------------------------------------------------
_HASHES = {
    "identity", "sha1", "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha2-512-224", "sha2-512-256",
    "sha3-224", "sha3-256", "sha3-384", "sha3-512", "shake-128", "shake-256", "keccak-224", "keccak-256",
    "keccak-384", "keccak-512", "blake3", "murmur3-x64-64", "murmur3-32", "dbl-sha2-256", "md5", "x11",
    "sha2-256-trunc254-padded", "poseidon-bls12_381-a2-fc1",
}
_HASH_FAMILIES = re.compile(r"(blake2b-(8|16|24|32|40|48|56|64|72|80|88|96|104|112|120|128|136|144|152|160|168|176|184|192|200|208|216|224|232|240|248|256|264|272|280|288|296|304|312|320|328|336|344|352|360|368|376|384|392|400|408|416|424|432|440|448|456|464|472|480|488|496|504|512)"
                            r"|blake2s-(8|16|24|32|40|48|56|64|72|80|88|96|104|112|120|128|136|144|152|160|168|176|184|192|200|208|216|224|232|240|248|256)"
                            r"|skein(256|512|1024)-\d+)")


@dataclass(frozen=True)
class AddPlan:
    """How to run one ``add``: the DAG layout, and what to store, pin and answer."""

    layout: Layout
    pin: bool
    only_hash: bool
    progress: bool
    silent: bool
    encoder: CidEncoder


def _chunk_size(chunker: str) -> int:
    """boxo's chunker parsing for the fixed-size chunker; the content-defined ones are refused."""
    if chunker in ("", "default"):
        return CHUNK_SIZE
    name = chunker.split("-", 1)[0]
    if name in ("rabin", "buzhash"):
        raise Refused(f"this store chunks with fixed sizes only (chunker=size-N); chunker={chunker} is not served.")
    if name != "size":
        raise Refused(f"unrecognized chunker option: {chunker}")
    parts = chunker.split("-")
    if len(parts) != 2:
        raise Refused("incorrect chunker string format (expected size-{size})")
    if not re.fullmatch(r"[+-]?\d+", parts[1]):
        raise Refused(f'strconv.Atoi: parsing "{parts[1]}": invalid syntax')
    size = int(parts[1])
    if size <= 0:
        raise Refused("chunker size must be greater than 0")
    if size > CHUNK_SIZE_LIMIT:
        raise Refused(f"chunker parameters may not exceed the maximum chunk size of {CHUNK_SIZE_LIMIT}")
    return size


def plan_add(request: Request) -> AddPlan:
    """Kubo's ``add`` options resolved as Kubo resolves them; Refused for what this store does otherwise."""
    value, given = request.value, request.given
    only_hash = bool(value("only-hash"))
    pin = bool(value("pin")) and not only_hash
    inline = bool(value("inline"))
    if inline and int(value("inline-limit")) > INLINE_LIMIT_MAX:  # type: ignore[call-overload]
        raise Refused(f"inline-limit {value('inline-limit')} exceeds maximum allowed size of {INLINE_LIMIT_MAX} bytes")
    metadata = bool(value("preserve-mode") or value("preserve-mtime") or value("mode") or value("mtime"))
    if metadata and "raw-leaves" in given and value("raw-leaves"):
        raise Refused("raw-leaves can't be used with UnixFS metadata like mode or modification time")
    if only_hash and "to-files" in given:
        raise Refused("only-hash and to-files options are not compatible")
    if "pin-name" in given and not pin:
        raise Refused("pin-name option requires pin to be set")
    if value("wrap-with-directory") and "to-files" in given:
        raise Refused("wrap-with-directory and to-files options are not compatible")
    if value("mtime-nsecs") and not value("mtime"):
        raise Refused('option "mtime-nsecs" requires "mtime" to be provided as well')
    hash_name = str(value("hash") or "sha2-256").lower()
    if hash_name not in _HASHES and not _HASH_FAMILIES.fullmatch(hash_name):
        raise Refused(f'unrecognized hash function: "{hash_name}"')
    encoder = cid_encoder(request)
    raw_leaves_set = "raw-leaves" in given
    if value("nocopy"):
        if raw_leaves_set and not value("raw-leaves"):
            raise Refused("nocopy option requires '--raw-leaves' to be enabled as well")
        raise Refused("either the filestore or the urlstore must be enabled to use nocopy, "
                      "see: https://github.com/ipfs/kubo/blob/master/docs/experimental-features.md#ipfs-filestore")
    version = int(value("cid-version")) if "cid-version" in given else -1  # type: ignore[call-overload]
    if hash_name != "sha2-256":
        if version == 0:
            raise Refused("CIDv0 only supports sha2-256")
        if version not in (1, -1):
            raise Refused(f"unknown CID version: {version}")
        raise Refused(f"this store hashes with sha2-256 only (every fedledger CID does); hash={hash_name} is not "
                      "served, leave hash unset.")
    version = 0 if version < 0 else version
    if version not in (0, 1):
        raise Refused(f"unknown CID version: {version}")
    raw_leaves = bool(value("raw-leaves")) if raw_leaves_set else version == 1
    chunk_size = _chunk_size(str(value("chunker") or ""))
    refusals = [
        (inline, "inline=true (blocks inlined into identity CIDs) is not served: this store names every block by its "
                 "sha2-256 digest; leave inline unset."),
        (bool(value("trickle")), "this store builds the balanced layout only; trickle=true is not served, leave it unset."),
        (bool(value("wrap-with-directory")), "this store adds single files only; wrap-with-directory=true is not "
                                             "served, leave it unset."),
        (metadata, "this store keeps no UnixFS metadata (mode, mtime); preserve-mode, preserve-mtime, mode and mtime "
                   "are not served, leave them unset."),
        ("to-files" in given, "this store has no MFS (Files API); to-files is not served, leave it unset."),
        (bool(value("pin-name")), "pins in this store carry no names; pin-name is not served, leave it unset."),
    ]
    for refused, sentence in refusals:
        if refused:
            raise Refused(sentence)
    max_links = int(value("max-file-links")) if "max-file-links" in given else MAX_LINKS  # type: ignore[call-overload]
    if max_links < 2:
        raise Refused(f"max-file-links must be at least 2 here (a file node of {max_links} link cannot hold a file); "
                      f"leave it unset for Kubo's {MAX_LINKS}.")
    return AddPlan(
        layout=Layout(cid_version=version, raw_leaves=raw_leaves, chunk_size=chunk_size, max_links=max_links),
        pin=pin, only_hash=only_hash, progress=bool(value("progress")), silent=bool(value("silent")), encoder=encoder,
    )


# -- reads and pins ------------------------------------------------------------------------------
def plan_range(request: Request) -> tuple[int, int | None]:
    """``cat``'s ``offset`` and ``length`` (None: to the end), refused when negative as Kubo refuses them."""
    offset = int(request.value("offset") or 0)  # type: ignore[call-overload]
    if offset < 0:
        raise Refused("cannot specify negative offset")
    length = request.value("length")
    if length is not None and int(length) < 0:  # type: ignore[call-overload]
        raise Refused("cannot specify negative length")
    return offset, None if length is None else int(length)  # type: ignore[call-overload]


def plan_get(request: Request) -> tuple[bool, int]:
    """``get``: (tar archive?, gzip level or 0); Kubo sends a tar unless asked for a compressed plain file."""
    archive, compress = bool(request.value("archive")), bool(request.value("compress"))
    level = request.value("compression-level")
    if not compress:
        return True, 0
    if level is None:
        return archive, 6  # gzip.DefaultCompression
    if not 1 <= int(level) <= 9:  # type: ignore[call-overload]
        raise Refused("compression level must be between 1 and 9")
    return archive, int(level)  # type: ignore[call-overload]


PIN_TYPES = ("direct", "indirect", "recursive", "all")


def plan_pin_ls(request: Request) -> str:
    kind = str(request.value("type"))
    if kind not in PIN_TYPES:
        raise Refused(f"invalid type '{kind}', must be one of {{direct, indirect, recursive, all}}")
    return kind


def plan_pin_add(request: Request) -> None:
    if not request.value("recursive"):
        raise Refused("this store keeps recursive pins only; recursive=false (a direct pin) is not served, "
                      "leave recursive unset.")
    if request.value("name"):
        raise Refused("pins in this store carry no names; name is not served, leave it unset.")
