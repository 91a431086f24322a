"""BranchCache / PeerDist: the server passphrase, the Content Information cache, MS-PCCRTP negotiation.

Server passphrase and secrets
-----------------------------
Every bootgate of a deployment shares one *server passphrase*: arbitrary bytes, 32 random bytes when
bootgate generates it (``bootgate init`` or the first ``serve``) in ``<data_dir>/branchcache/passphrase``
(hex text, mode 0600). ``[branchcache] passphrase_hex`` (or ``bootgate hash --passphrase-hex``) imports
another one, e.g. the one of an IIS server, so that bootgate and IIS hand out identical Content
Information for identical content.

The formula (MS-PCCRC 2.1 / 2.2, checked byte for byte against IIS 8.5 output): the passphrase is
taken as raw bytes, never re-encoded; ``Ks(V1) = SHA-256(passphrase)`` (SHA-384 / SHA-512 for those V1
algorithms), ``Ks(V2) = SHA-512(passphrase)[:32]``; segment secrets are ``Kp = HMAC(Ks, HoD)``. The bytes
to import from IIS are the server secret key as ``Export-BCSecretKey`` / ``netsh branchcache exportkey``
carries it once decrypted with the export file's passphrase (the 32 bytes iPXE's test vectors call the
"server passphrase"); give them as hex. A text passphrase set on Windows with ``Set-BCSecretKey
-Passphrase`` is turned into that key by Windows in a way this module does not reproduce: export the
key from such a server and import the hex.

Cache
-----
Content Information is keyed by the file's identity (path, device, inode, size, mtime, ctime: a changed
file is a new key), the build settings (version, algorithm, segment size), and a fingerprint of the
passphrase. Blobs live in memory (bounded) and under ``<data_dir>/branchcache/ci/``. Builds run in Rust
on every core with the GIL released (``asyncio.to_thread``), one at a time, in the background: when the
content root scan finds a new or changed file, or when a PeerDist request finds none cached (that request
is answered with the plain file meanwhile).

Negotiation (MS-PCCRTP, as iPXE speaks it)
-------------------------------------------
iPXE sends ``Accept-Encoding: peerdist``, ``X-P2P-PeerDist: Version=1.1`` and ``X-P2P-PeerDistEx:
MinContentInformation=1.0, MaxContentInformation=2.0`` on a whole-file GET; the answer is ``200`` with
``Content-Encoding: peerdist``, ``X-P2P-PeerDist: Version=1.1, ContentLength=<file size>`` and the Content
Information as body. Blocks no peer had are fetched as plain ``Range`` requests carrying ``X-P2P-PeerDist:
Version=1.1, MissingDataRequest=true``: those get exact ``206`` answers, their bytes counted as fallback.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .config import BranchCacheSettings
    from .metrics import Metrics

log = logging.getLogger("bootgate.branchcache")

PASSPHRASE_FILE = "passphrase"
PASSPHRASE_BYTES = 32
MEMORY_LIMIT = 64 * 1024 * 1024  # bytes of Content Information kept in memory


class PassphraseError(ValueError):
    """A passphrase that cannot be used (the message says why and how to fix it)."""


# ----------------------------------------------------------------------------------------- passphrase


def parse_passphrase_hex(text: str) -> bytes:
    """Bytes of a hex passphrase; spaces, colons and a leading 0x are ignored."""
    hx = re.sub(r"[\s:]", "", text)
    if hx.lower().startswith("0x"):
        hx = hx[2:]
    if not hx or not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", hx):
        raise PassphraseError("the passphrase must be a non-empty, even number of hex digits")
    return bytes.fromhex(hx)


def passphrase_path(data_dir: Path) -> Path:
    return Path(data_dir) / "branchcache" / PASSPHRASE_FILE


def write_passphrase(data_dir: Path, passphrase: bytes) -> Path:
    """Stores `passphrase` as the server passphrase (hex, mode 0600, replaced atomically)."""
    path = passphrase_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (passphrase.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load_or_create_passphrase(data_dir: Path, configured_hex: str = "") -> bytes:
    """The server passphrase: `configured_hex` if given, else the stored one, else a new random one."""
    if configured_hex:
        return parse_passphrase_hex(configured_hex)
    path = passphrase_path(data_dir)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        value = secrets.token_bytes(PASSPHRASE_BYTES)
        write_passphrase(data_dir, value)
        log.info("generated the BranchCache server passphrase in %s", path)
        return value
    except (OSError, UnicodeDecodeError) as e:
        raise PassphraseError(f"{path}: cannot read the server passphrase: {e}") from None
    try:
        return parse_passphrase_hex(text)
    except PassphraseError as e:
        raise PassphraseError(f"{path}: {e}: restore it or delete it to generate a new one") from None


def passphrase_fingerprint(passphrase: bytes) -> str:
    """A short public name of a passphrase (not the secret): hex of SHA-256("bootgate" + passphrase)[:8]."""
    return hashlib.sha256(b"bootgate-branchcache\0" + passphrase).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- negotiation


@dataclass(frozen=True)
class PeerDistRequest:
    """What a request says about PeerDist."""

    accepts: bool  # Accept-Encoding lists peerdist (not q=0) and X-P2P-PeerDist is present
    version: tuple[int, int] | None  # X-P2P-PeerDist Version
    min_ci: tuple[int, int]
    max_ci: tuple[int, int]
    missing_data: bool  # MissingDataRequest=true

    def allowed_versions(self, offered: Iterable[int]) -> list[int]:
        """The Content Information versions (1, 2) of `offered` (in its order) this client takes."""
        return [v for v in offered if self.min_ci <= (v, 0) <= self.max_ci]


def _params(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = v.strip()
    return out


def _version(text: str | None) -> tuple[int, int] | None:
    m = re.fullmatch(r"\s*(\d{1,3})\.(\d{1,3})\s*", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _accepts_peerdist(accept_encoding: str | None) -> bool:
    for item in (accept_encoding or "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() != "peerdist":
            continue
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        try:
            return not (m and float(m.group(1)) == 0.0)
        except ValueError:
            return False
    return False


def parse_request(headers: Mapping[str, str]) -> PeerDistRequest:
    """Reads Accept-Encoding, X-P2P-PeerDist and X-P2P-PeerDistEx (header names case-insensitive).

    MS-PCCRTP: version 1.0 clients take Content Information 1.0 only; a 1.1 client states its range in
    X-P2P-PeerDistEx (default 1.0..1.0).
    """
    h = {k.lower(): v for k, v in headers.items()}
    pd = _params(h.get("x-p2p-peerdist"))
    ex = _params(h.get("x-p2p-peerdistex"))
    version = _version(pd.get("version"))
    lo = _version(ex.get("mincontentinformation")) or (1, 0)
    hi = _version(ex.get("maxcontentinformation")) or (1, 0)
    if version is not None and version < (1, 1):
        lo, hi = (1, 0), (1, 0)
    return PeerDistRequest(
        accepts=_accepts_peerdist(h.get("accept-encoding")) and version is not None,
        version=version,
        min_ci=lo,
        max_ci=hi,
        missing_data=pd.get("missingdatarequest", "").lower() == "true",
    )


@dataclass(frozen=True)
class PeerPolicy:
    """Which clients are offered PeerDist: enabled, inside `subnets` (empty = all), outside `exclude`."""

    enabled: bool = True
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    exclude: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def allows(self, client_ip: str | None) -> bool:
        if not self.enabled:
            return False
        if not self.subnets and not self.exclude:
            return True
        try:
            ip = ipaddress.ip_address(client_ip or "")
        except ValueError:
            return not self.subnets
        if any(ip in n for n in self.exclude):
            return False
        return not self.subnets or any(ip in n for n in self.subnets)


# ---------------------------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class BuildSpec:
    """How one version's Content Information is built."""

    version: int
    hash_algo: str = "sha256"  # V1 only
    segment_size: int | None = None  # V1: None = 32 MiB (spec); V2: bytes per segment (None = 64 KiB)

    def native_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.version == 1:
            kw["hash_algo"] = self.hash_algo
        if self.segment_size is not None:
            kw["segment_size"] = self.segment_size
        return kw

    def tag(self) -> str:
        if self.version == 1:
            return f"v1-{self.hash_algo}-{self.segment_size or 'spec'}"
        return f"v2-{self.segment_size or 65536}"


@dataclass(frozen=True)
class FileKey:
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path, st: os.stat_result) -> FileKey:
        return cls(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class SegmentRef:
    """Where one segment of a hashed file lies, for the MS-PCCRR peer (bootgate.web.peer)."""

    path: str
    file_key: FileKey
    offset: int
    length: int
    block_size: int
    blocks: int
    secret: bytes
    version: int = 1
    growing: bool = False  # a segment still being fetched from upstream: blocks < ready are verified

    def block_range(self, index: int) -> tuple[int, int] | None:
        """(start, end) of block `index` in the file, end exclusive; None if there is no such block."""
        if not 0 <= index < self.blocks:
            return None
        start = self.offset + index * self.block_size
        return start, min(start + self.block_size, self.offset + self.length)


def _native() -> Any:
    from . import _native

    return _native


class ContentInfoCache:
    """Content Information of files, built in the background, kept in memory and on disk."""

    def __init__(self, cache_dir: Path, passphrase: bytes, specs: Iterable[BuildSpec], *, threads: int = 0,
                 metrics: Metrics | None = None, memory_limit: int = MEMORY_LIMIT) -> None:
        self.cache_dir = Path(cache_dir)
        self.passphrase = passphrase
        self.fingerprint = passphrase_fingerprint(passphrase)
        self.specs = {s.version: s for s in specs}
        self.threads = threads
        self.metrics = metrics
        self.memory_limit = memory_limit
        self._mem: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._mem_bytes = 0
        self._pending: dict[str, asyncio.Task[bytes | None]] = {}
        self._build_lock: asyncio.Lock | None = None
        self._failed: dict[str, FileKey] = {}  # keys whose build failed (not retried until the file changes)
        self.builds = 0
        self._segments: dict[bytes, SegmentRef] = {}  # segment ID (HoHoDk) -> where it is
        self._indexed: set[str] = set()

    def _index(self, key: str, fk: FileKey, blob: bytes) -> None:
        if key in self._indexed:
            return
        try:
            info = _native().parse_content_information(blob)
        except Exception:  # noqa: BLE001 - a damaged cache file is ignored (and rebuilt when the file changes)
            return
        self._indexed.add(key)
        for s in info["segments"]:
            self._segments[s["id"]] = SegmentRef(fk.path, fk, s["offset"], s["length"], s["block_size"],
                                                 len(s["block_hashes"]), s["secret"], info["version"])

    def segment(self, segment_id: bytes) -> SegmentRef | None:
        """The segment with this ID (HoHoDk) among the files hashed or loaded so far."""
        return self._segments.get(segment_id)

    # keys and storage

    def _key(self, fk: FileKey, spec: BuildSpec) -> str:
        ident = f"{fk.path}\0{fk.dev}\0{fk.ino}\0{fk.size}\0{fk.mtime_ns}\0{fk.ctime_ns}\0{spec.tag()}\0{self.fingerprint}"
        return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()

    def _prefix(self, fk: FileKey, spec: BuildSpec) -> str:
        return hashlib.sha256(fk.path.encode("utf-8", "surrogateescape")).hexdigest()[:16] + "-" + spec.tag()

    def _disk_path(self, fk: FileKey, spec: BuildSpec) -> Path:
        return self.cache_dir / f"{self._prefix(fk, spec)}-{self._key(fk, spec)[:32]}.ci"

    def _remember(self, key: str, blob: bytes) -> None:
        if key in self._mem:
            self._mem.move_to_end(key)
            return
        self._mem[key] = blob
        self._mem_bytes += len(blob)
        while self._mem_bytes > self.memory_limit and len(self._mem) > 1:
            _, old = self._mem.popitem(last=False)
            self._mem_bytes -= len(old)

    def lookup(self, path: Path, st: os.stat_result, version: int) -> bytes | None:
        """The cached Content Information of this file as it is now, or None (never builds)."""
        spec = self.specs.get(version)
        if spec is None:
            return None
        fk = FileKey.of(path, st)
        key = self._key(fk, spec)
        blob = self._mem.get(key)
        if blob is not None:
            self._mem.move_to_end(key)
            return blob
        try:
            blob = self._disk_path(fk, spec).read_bytes()
        except OSError:
            return None
        self._remember(key, blob)
        self._index(key, fk, blob)
        return blob

    def building(self, path: Path, st: os.stat_result, version: int) -> bool:
        spec = self.specs.get(version)
        return spec is not None and self._key(FileKey.of(path, st), spec) in self._pending

    def schedule(self, path: Path, st: os.stat_result, version: int) -> asyncio.Task[bytes | None] | None:
        """Starts a background build of this file/version unless cached, failed, or already running."""
        spec = self.specs.get(version)
        if spec is None:
            return None
        fk = FileKey.of(path, st)
        key = self._key(fk, spec)
        if key in self._pending:
            return self._pending[key]
        if key in self._failed or self.lookup(path, st, version) is not None:
            return None
        task = asyncio.get_running_loop().create_task(self._build_bg(path, fk, spec, key))
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._pending.pop(key, None))
        return task

    async def _build_bg(self, path: Path, fk: FileKey, spec: BuildSpec, key: str) -> bytes | None:
        if self._build_lock is None:
            self._build_lock = asyncio.Lock()
        async with self._build_lock:  # one build at a time: each one uses every core
            try:
                return await self.build(path, spec.version, expect=fk)
            except Exception as e:  # noqa: BLE001 - a failed background build is logged and counted
                self._failed[key] = fk
                log.warning("content information of %s (version %d) not built: %s", path, spec.version, e)
                if self.metrics is not None:
                    self.metrics.peerdist_builds.labels(str(spec.version), "error").inc()
                return None

    async def build(self, path: Path, version: int, *, expect: FileKey | None = None,
                    progress: Any = None) -> bytes:
        """Builds (in a worker thread, GIL released) and stores the Content Information of `path`."""
        spec = self.specs[version]
        native = _native()
        started = time.monotonic()
        blob, info = await asyncio.to_thread(
            native.content_information, str(path), version, self.passphrase, threads=self.threads,
            progress=progress, **spec.native_kwargs())
        st = await asyncio.to_thread(os.stat, path)
        fk = FileKey.of(path, st)
        if (fk.dev, fk.ino, fk.size, fk.mtime_ns) != (info["dev"], info["ino"], info["size"], info["mtime_ns"]) or (
                expect is not None and fk != expect):
            raise RuntimeError(f"{path} changed while it was hashed")
        self.builds += 1
        if self.metrics is not None:
            self.metrics.peerdist_builds.labels(str(version), "ok").inc()
            self.metrics.peerdist_bytes_hashed.inc(info["size"])
        await asyncio.to_thread(self._store, fk, spec, blob)
        self._remember(self._key(fk, spec), blob)
        self._index(self._key(fk, spec), fk, blob)
        log.info("content information of %s (version %d, %d bytes, %d segments) built in %.2fs", path, version,
                 info["size"], info["segments"], time.monotonic() - started)
        return bytes(blob)

    def _store(self, fk: FileKey, spec: BuildSpec, blob: bytes) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self._disk_path(fk, spec)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
        prefix = self._prefix(fk, spec) + "-"
        for old in self.cache_dir.glob(prefix + "*.ci"):  # earlier versions of the same file
            if old != target:
                old.unlink(missing_ok=True)

    async def scan(self, root: Path) -> int:
        """Schedules builds for every regular file under `root` that has none; returns how many."""
        def walk() -> list[tuple[Path, os.stat_result]]:
            out = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if name.startswith("."):
                        continue
                    p = Path(dirpath) / name
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        out.append((Path(os.path.realpath(p)), st))
            return out

        scheduled = 0
        for p, st in await asyncio.to_thread(walk):
            for v in self.specs:
                if self.schedule(p, st, v) is not None:
                    scheduled += 1
        return scheduled

    async def wait_idle(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)


def specs_from_settings(bc: BranchCacheSettings) -> list[BuildSpec]:
    return [BuildSpec(version=v, segment_size=(bc.v2_segment_size if v == 2 else None)) for v in bc.versions]


class BranchCacheService:
    """What /content needs: the cache, the policy and the offered versions."""

    def __init__(self, cache: ContentInfoCache, policy: PeerPolicy, versions: tuple[int, ...],
                 content_root: Path, scan_interval: int = 0, prebuild: bool = True,
                 upstream: Upstream | None = None) -> None:
        self.upstream = upstream
        self.cache = cache
        self.policy = policy
        self.versions = versions
        self.content_root = content_root
        self.scan_interval = scan_interval
        self.prebuild = prebuild
        self._scanner: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Any, metrics: Metrics | None = None) -> BranchCacheService:
        bc = settings.branchcache
        data_dir = settings.server.data_dir
        passphrase = load_or_create_passphrase(data_dir, bc.passphrase_hex)
        cache = ContentInfoCache(data_dir / "branchcache" / "ci", passphrase, specs_from_settings(bc),
                                 threads=bc.threads, metrics=metrics)
        policy = PeerPolicy(enabled=bc.enabled, subnets=bc.subnets, exclude=bc.exclude_subnets)
        upstream = None
        if bc.upstream_url:
            store = PeerStore(data_dir / "branchcache" / "peer", bc.peer_cache_mb * 2**20)
            upstream = Upstream(bc.upstream_url, bc.upstream_ca, store, passphrase, metrics)
        return cls(cache, policy, bc.versions, settings.content.root, bc.scan_interval, bc.prebuild, upstream)

    def relative(self, path: str) -> str | None:
        """`path` (a hashed file) relative to the content root, as /content serves it; None if outside."""
        root = os.path.realpath(self.content_root)
        full = os.path.realpath(path)
        if full == root or os.path.commonpath([root, full]) != root:
            return None
        return Path(os.path.relpath(full, root)).as_posix()

    def start(self) -> None:
        """Starts the background scanner (builds for new/changed files) if prebuilding is on."""
        if self.prebuild and self.policy.enabled and self._scanner is None:
            self._scanner = asyncio.get_running_loop().create_task(self._scan_loop())

    async def _scan_loop(self) -> None:
        while True:
            try:
                if self.content_root.is_dir():
                    await self.cache.scan(self.content_root)
            except Exception as e:  # noqa: BLE001 - keep scanning
                log.warning("content root scan failed: %s", e)
            if self.scan_interval <= 0:
                return
            await asyncio.sleep(self.scan_interval)

    async def stop(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
            try:
                await self._scanner
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._scanner = None
        for t in list(self.cache._pending.values()):
            t.cancel()

    def choose(self, req: PeerDistRequest, client_ip: str | None, path: Path,
               st: os.stat_result) -> tuple[int, bytes] | str:
        """(version, blob) to answer with, or the reason for a plain answer."""
        if not req.accepts:
            return "not_requested"
        if not self.policy.allows(client_ip):
            return "disabled"
        allowed = req.allowed_versions(self.versions)
        if not allowed:
            return "no_common_version"
        for v in allowed:
            blob = self.cache.lookup(path, st, v)
            if blob is not None:
                return v, blob
        for v in allowed:
            self.cache.schedule(path, st, v)
        return "not_cached"


# ------------------------------------------------------------------------------ branch peer upstream


class FillError(Exception):
    """A segment could not be fetched or verified (the message says why); `result` labels the metric."""

    def __init__(self, message: str, result: str = "error") -> None:
        super().__init__(message)
        self.result = result


class PeerStore:
    """Segments a branch peer fetched from its upstream: ``<dir>/<id hex>.seg`` (the segment's bytes) and
    ``<id hex>.json`` (how to serve it), at most `max_bytes` in all; the least recently used go first."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._refs: collections.OrderedDict[bytes, SegmentRef] = collections.OrderedDict()
        self.bytes = 0
        self._load()

    def _load(self) -> None:
        found = []
        for meta in self.dir.glob("*.json") if self.dir.is_dir() else ():
            try:
                seg_id = bytes.fromhex(meta.stem)
                d = orjson.loads(meta.read_bytes())
                seg = meta.with_suffix(".seg")
                st = seg.stat()
                if st.st_size != d["length"]:
                    raise ValueError("size differs")
                ref = SegmentRef(str(seg), FileKey.of(seg, st), 0, int(d["length"]), int(d["block_size"]),
                                 int(d["blocks"]), bytes.fromhex(d["secret"]), int(d["version"]))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.info("dropping the peer cache entry %s: %s", meta.name, e)
                self._remove(meta.stem)
                continue
            found.append((st.st_mtime_ns, seg_id, ref))
        for _, seg_id, ref in sorted(found, key=lambda t: t[0]):
            self._refs[seg_id] = ref
            self.bytes += ref.length
        self._evict()

    def _remove(self, stem: str) -> None:
        for suffix in (".seg", ".json"):
            (self.dir / (stem + suffix)).unlink(missing_ok=True)

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._refs:
            seg_id, ref = self._refs.popitem(last=False)
            self.bytes -= ref.length
            self._remove(seg_id.hex())

    def get(self, segment_id: bytes) -> SegmentRef | None:
        ref = self._refs.get(segment_id)
        if ref is not None:
            self._refs.move_to_end(segment_id)
        return ref

    def temp_path(self, segment_id: bytes) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.dir / f".{segment_id.hex()}.{os.getpid()}.tmp"

    def add(self, segment_id: bytes, tmp: Path, seg: Mapping[str, Any], version: int) -> SegmentRef:
        """Moves the verified bytes in `tmp` into the store as segment `segment_id`; returns its ref."""
        stem = segment_id.hex()
        target = self.dir / (stem + ".seg")
        os.replace(tmp, target)
        meta = {"length": seg["length"], "block_size": seg["block_size"], "blocks": len(seg["block_hashes"]),
                "secret": seg["secret"].hex(), "version": version}
        (self.dir / (stem + ".json")).write_bytes(orjson.dumps(meta))
        ref = SegmentRef(str(target), FileKey.of(target, target.stat()), 0, seg["length"], seg["block_size"],
                         len(seg["block_hashes"]), seg["secret"], version)
        old = self._refs.pop(segment_id, None)
        if old is not None:
            self.bytes -= old.length
        self._refs[segment_id] = ref
        self.bytes += ref.length
        self._evict()
        return ref


class _Fill:
    """One segment being fetched: its task and, once the lookup is verified, the partial file's ref and
    how many of its blocks are written and verified (`event` is replaced and set at each step)."""

    def __init__(self) -> None:
        self.task: asyncio.Task[SegmentRef | None]
        self.partial: SegmentRef | None = None
        self.ready = 0
        self.event = asyncio.Event()

    def publish(self, ref: SegmentRef, ready: int) -> None:
        self.partial, self.ready = ref, ready
        old, self.event = self.event, asyncio.Event()
        old.set()


SEGMENT_LOOKUP_PATH = "/branchcache/v1/segments/"
NOT_FOUND_RETRY = 10.0  # seconds a segment the upstream does not know is not asked for again


class Upstream:
    """A branch peer's source: the main bootgate at `base_url`. A segment ID that is not held is looked up
    there (``GET <base>/branchcache/v1/segments/<id hex>`` -> the file's path under /content and its Content
    Information), the segment's byte range is fetched from ``<base>/content/<path>``, every block is checked
    against its hash, V1's HoD against the block hashes, the segment ID (HMAC(Kp, HoD + ...)) against the one
    asked for and the segment secret against this server's passphrase (shared by the deployment); only then
    is it stored. Concurrent requests for one segment share one fetch."""

    def __init__(self, base_url: str, ca_file: str, store: PeerStore, passphrase: bytes,
                 metrics: Metrics | None = None, timeout: float = 60.0) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"[branchcache] upstream_url {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.prefix = u.path.rstrip("/")
        self.ca_file = ca_file
        self.store = store
        self.passphrase = passphrase
        self.metrics = metrics
        self.timeout = timeout
        self._inflight: dict[bytes, _Fill] = {}
        self._unknown: dict[bytes, float] = {}
        self.fills = 0

    def _connection(self) -> Any:
        import http.client
        import ssl

        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=os.path.expanduser(self.ca_file) if self.ca_file else None)
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _count(self, result: str, nbytes: int = 0) -> None:
        if self.metrics is not None:
            self.metrics.peerdist_upstream_fills.labels(result).inc()
            if nbytes:
                self.metrics.peerdist_upstream_bytes.inc(nbytes)

    async def segment(self, segment_id: bytes, block: int = 0) -> SegmentRef | None:
        """The stored segment, fetched from upstream first if needed; None if upstream cannot supply it.
        While a fetch runs, a `growing` ref to its partial file is returned as soon as `block` is verified
        (iPXE gives a peer 3 s to start answering; a 32 MiB V1 segment may take longer over a WAN)."""
        ref = self.store.get(segment_id)
        if ref is not None:
            return ref
        if time.monotonic() < self._unknown.get(segment_id, 0.0):
            return None
        fill = self._inflight.get(segment_id)
        if fill is None:
            fill = _Fill()
            fill.task = asyncio.get_running_loop().create_task(self._fill(segment_id, fill))
            self._inflight[segment_id] = fill
            fill.task.add_done_callback(lambda _t: self._inflight.pop(segment_id, None))
        while not fill.task.done():
            if fill.partial is not None and fill.ready > block:
                return fill.partial
            waiter = asyncio.ensure_future(fill.event.wait())
            try:
                await asyncio.wait({fill.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        return fill.task.result()

    async def _fill(self, segment_id: bytes, fill: _Fill) -> SegmentRef | None:
        loop = asyncio.get_running_loop()

        def publish(ref: SegmentRef, ready: int) -> None:  # from the worker thread
            loop.call_soon_threadsafe(fill.publish, ref, ready)

        try:
            tmp, seg, version = await asyncio.to_thread(self._fetch, segment_id, publish)
            # in the loop thread: the partial file is renamed and the store updated with no await in
            # between, so a reader of the partial file that finds it gone finds the stored segment
            try:
                ref = self.store.add(segment_id, tmp, seg, version)
            finally:
                tmp.unlink(missing_ok=True)
        except FillError as e:
            log.warning("segment %s not filled from %s: %s", segment_id.hex()[:16], self.base_url, e)
            self._count(e.result)
            if len(self._unknown) > 4096:  # bounded: forget the expired ones
                now = time.monotonic()
                self._unknown = {k: t for k, t in self._unknown.items() if t > now}
            self._unknown[segment_id] = time.monotonic() + NOT_FOUND_RETRY
            return None
        except (OSError, ValueError) as e:  # network, TLS, disk; HTTP protocol errors become FillError
            log.warning("segment %s not filled from %s: %s", segment_id.hex()[:16], self.base_url, e)
            self._count("error")
            return None
        self.fills += 1
        self._count("ok", ref.length)
        return ref

    def _fetch(self, segment_id: bytes,
               publish: Callable[[SegmentRef, int], None]) -> tuple[Path, dict[str, Any], int]:
        """(worker thread) Looks the segment up, fetches and verifies its bytes into a partial file:
        (that file, the segment's record from the Content Information, its version)."""
        import base64
        import hmac
        import http.client
        from urllib.parse import quote

        try:
            conn = self._connection()
            try:
                conn.request("GET", self.prefix + SEGMENT_LOOKUP_PATH + segment_id.hex())
                r = conn.getresponse()
                body = r.read(64 * 2**20)
                if r.status == 404:
                    raise FillError("the upstream does not know this segment", "not_found")
                if r.status != 200:
                    raise FillError(f"segment lookup answered {r.status}")
                meta = orjson.loads(body)
                blob = base64.b64decode(meta["content_information"])
                version, rel = int(meta["version"]), str(meta["path"])
            finally:
                conn.close()
            info = _native().parse_content_information(blob)
            seg = next((s for s in info["segments"] if s["id"] == segment_id), None)
            if seg is None or info["version"] != version:
                raise FillError("the upstream's Content Information does not hold this segment", "bad_hash")
            algo = "sha512" if version == 2 else info["hash_algo"]
            if version == 1 and hashlib.new(algo, b"".join(seg["block_hashes"])).digest() != seg["hod"]:
                raise FillError("HoD differs from the hash of the block hashes", "bad_hash")
            ks = hashlib.new(algo, self.passphrase).digest()[:32 if version == 2 else None]
            kp = hmac.new(ks, seg["hod"], algo).digest()[:32 if version == 2 else None]
            if kp != seg["secret"]:
                raise FillError("segment secret differs from HMAC(Ks, HoD) with this server's passphrase: set the "
                                "main server's [branchcache] passphrase_hex here too", "bad_secret")
            tmp = self.store.temp_path(segment_id)
            partial = SegmentRef(str(tmp), FileKey(str(tmp), 0, 0, 0, 0, 0), 0, seg["length"], seg["block_size"],
                                 len(seg["block_hashes"]), seg["secret"], version, growing=True)
            try:
                self._download(quote(rel), seg, algo, version, tmp, lambda n: publish(partial, n))
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return tmp, seg, version
        except (http.client.HTTPException, KeyError, TypeError) as e:
            raise FillError(f"bad answer from the upstream: {e!r}") from None

    def _download(self, rel_url: str, seg: Mapping[str, Any], algo: str, version: int, tmp: Path,
                  verified: Callable[[int], None]) -> None:
        start, length, bsize = seg["offset"], seg["length"], seg["block_size"]
        conn = self._connection()
        try:
            conn.request("GET", f"{self.prefix}/content/{rel_url}",
                         headers={"Range": f"bytes={start}-{start + length - 1}"})
            r = conn.getresponse()
            if r.status != 206 or not (r.getheader("Content-Range") or "").startswith(
                    f"bytes {start}-{start + length - 1}/"):
                raise FillError(f"range request answered {r.status} {r.getheader('Content-Range')!r}")
            with open(tmp, "wb") as out:
                for i, want in enumerate(seg["block_hashes"]):
                    n = min(bsize, length - i * bsize)
                    block = r.read(n)
                    while len(block) < n:
                        more = r.read(n - len(block))
                        if not more:
                            raise FillError("the upstream's answer ended early")
                        block += more
                    got = hashlib.new(algo, block).digest()[:32 if version == 2 else None]
                    if got != want:
                        raise FillError(f"block {i} does not match its hash (the file changed upstream?)",
                                        "bad_hash")
                    out.write(block)
                    out.flush()  # readable by the peer answering from the partial file
                    verified(i + 1)
        finally:
            conn.close()


# ------------------------------------------------------------------------------------ bootgate hash


def add_hash_parser(sub: Any, with_config: Any) -> None:
    """Registers `bootgate hash` on the CLI's subparsers."""
    s = sub.add_parser("hash", help="build (or show the cached) BranchCache Content Information of a file")
    s.add_argument("file", help="the file to hash (e.g. under the content root)")
    s.add_argument("--version", dest="ci_version", type=int, choices=[1, 2], default=None,
                   help="Content Information version (default: the first of [branchcache] versions)")
    s.add_argument("--passphrase-hex", metavar="HEX",
                   help="server passphrase in hex (default: [branchcache] passphrase_hex, else the data dir's)")
    s.add_argument("--save-passphrase", action="store_true",
                   help="store --passphrase-hex as this server's passphrase (<data_dir>/branchcache/passphrase)")
    s.add_argument("--segment-size", type=int, metavar="BYTES",
                   help="V2: bytes per segment (default [branchcache] v2_segment_size); V1: segment size "
                        "(not interoperable unless 33554432)")
    s.add_argument("--hash-algo", choices=["sha256", "sha384", "sha512"], default="sha256", help="V1 hash")
    s.add_argument("--threads", type=int, default=None, help="hashing threads (default [branchcache] threads; 0 = all)")
    s.add_argument("-o", "--output", metavar="OUT", help="write the Content Information blob to OUT")
    s.add_argument("--segments", action="store_true", help="list the segments (offset, length, HoD, id)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    with_config(s)


class _ProgressBar:
    def __init__(self, total: int, enabled: bool) -> None:
        import sys
        import threading

        self.total, self.enabled, self.stream = total, enabled, sys.stderr
        self.progress = _native().HashProgress()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _draw(self) -> None:
        done = self.progress.bytes_done
        frac = done / self.total if self.total else 1.0
        rate = done / max(time.monotonic() - self.started, 1e-9) / 2**20
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {frac * 100:5.1f}% {done / 2**20:9.1f} MiB {rate:8.1f} MiB/s")
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._draw()

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
            self._draw()
            self.stream.write("\n")


def hash_command(args: Any, settings: Any) -> int:
    """`bootgate hash FILE`: shows the cached Content Information, or builds and caches it."""
    import sys

    path = Path(args.file)
    try:
        st = path.stat()
    except OSError as e:
        print(f"bootgate: {path}: {e.strerror}", file=sys.stderr)
        return 1
    if not stat.S_ISREG(st.st_mode):
        print(f"bootgate: {path}: not a regular file", file=sys.stderr)
        return 1
    bcs = settings.branchcache
    version = args.ci_version or bcs.versions[0]
    data_dir = settings.server.data_dir
    try:
        if args.passphrase_hex:
            passphrase = parse_passphrase_hex(args.passphrase_hex)
            if args.save_passphrase:
                print(f"passphrase:  saved to {write_passphrase(data_dir, passphrase)}")
        else:
            if args.save_passphrase:
                print("bootgate: --save-passphrase needs --passphrase-hex", file=sys.stderr)
                return 2
            passphrase = load_or_create_passphrase(data_dir, bcs.passphrase_hex)
    except (PassphraseError, OSError) as e:
        print(f"bootgate: {e}", file=sys.stderr)
        return 2
    seg = args.segment_size if args.segment_size is not None else (bcs.v2_segment_size if version == 2 else None)
    spec = BuildSpec(version=version, hash_algo=args.hash_algo, segment_size=seg)
    threads = bcs.threads if args.threads is None else args.threads
    cache = ContentInfoCache(data_dir / "branchcache" / "ci", passphrase, [spec], threads=threads)
    real = Path(os.path.realpath(path))
    blob = cache.lookup(real, real.stat(), version)
    source = "cache"
    started = time.monotonic()
    if blob is None:
        source = "built"
        bar = _ProgressBar(st.st_size, enabled=not args.no_progress and sys.stderr.isatty())
        try:
            with bar:
                blob = asyncio.run(cache.build(real, version, progress=bar.progress))
        except (OSError, ValueError, RuntimeError, _native().BootgateError) as e:
            print(f"bootgate: {path}: {e}", file=sys.stderr)
            return 1
    elapsed = time.monotonic() - started
    info = _native().parse_content_information(blob)
    if args.output:
        Path(args.output).write_bytes(blob)
    print(f"file:        {path} ({st.st_size} bytes)")
    print(f"version:     {info['version']}.0 ({info['hash_algo']}), {len(info['segments'])} segments, "
          f"{len(blob)} bytes of Content Information ({source})")
    print(f"passphrase:  fingerprint {passphrase_fingerprint(passphrase)}")
    if source == "built":
        rate = st.st_size / max(elapsed, 1e-9) / 2**20
        backend = _native().hash_backend()
        print(f"hashed in:   {elapsed:.3f} s ({rate:.1f} MiB/s, {threads or _native().hash_threads()} threads, "
              f"{backend})")
    if args.output:
        print(f"written to:  {args.output}")
    if args.segments:
        for s in info["segments"]:
            print(f"segment {s['offset']:>12} +{s['length']:<9} hod {s['hod'].hex()} id {s['id'].hex()}")
    return 0


# ------------------------------------------------------------------------------ iPXE script settings


def ipxe_script_lines(bc: BranchCacheSettings, client_ip: str | None) -> list[str]:
    """iPXE commands a boot script should run before fetching images from /content, for this client:
    `set peerdist 0` where PeerDist is off for the client (iPXE then does not ask for Content
    Information), else `set peerdist 1` and, when [branchcache] peerhosts maps the client's network
    to a hosted-cache peer, `set peerhost <host:port>` (the first matching network wins)."""
    policy = PeerPolicy(enabled=bc.enabled, subnets=bc.subnets, exclude=bc.exclude_subnets)
    if not policy.allows(client_ip):
        return ["set peerdist 0"]
    lines = ["set peerdist 1"]
    try:
        ip = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return lines
    for net, host in bc.peerhosts:
        if ip in net:
            lines.append(f"set peerhost {host}")
            break
    return lines
