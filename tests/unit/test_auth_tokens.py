from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from bootgate.auth.tokens import TokenError, TokenSigner, load_or_create_key, normalize_mac

MAC = "52:54:00:12:34:56"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def signer(clock: Clock | None = None) -> TokenSigner:
    return TokenSigner(b"k" * 32, ttl=1800, clock=clock or Clock())


def reason(fn: object) -> str:
    with pytest.raises(TokenError) as e:
        fn()  # type: ignore[operator]
    return e.value.reason


def test_round_trip_binds_machine_user_and_claims() -> None:
    s = signer()
    tok = s.issue("52-54-00-12-34-56", "alice", claims={"deployment": 7})
    got = s.verify(tok, mac="5254.0012.3456")
    assert got.mac == MAC and got.user == "alice" and got.claims == {"deployment": 7}
    assert got.expires - got.issued == pytest.approx(1800)


def test_expired_token() -> None:
    c = Clock()
    s = signer(c)
    tok = s.issue(MAC, "alice")
    c.t += 1799
    s.verify(tok, mac=MAC)
    c.t += 2
    assert reason(lambda: s.verify(tok, mac=MAC)) == "expired"


def test_token_for_another_machine_or_purpose() -> None:
    s = signer()
    tok = s.issue(MAC, "alice")
    assert reason(lambda: s.verify(tok, mac="52:54:00:12:34:57")) == "wrong_machine"
    assert reason(lambda: s.verify(tok, mac="garbage")) == "wrong_machine"
    assert reason(lambda: s.verify(tok, mac=MAC, purpose="admin")) == "wrong_purpose"


def test_tampered_payload_and_other_key() -> None:
    s = signer()
    tok = s.issue(MAC, "alice", claims={"deployment": 7})
    v, payload, sig = tok.split(".")
    import base64
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["c"]["deployment"] = 8
    forged = v + "." + base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode() + "." + sig
    assert reason(lambda: s.verify(forged, mac=MAC)) == "bad_signature"
    other = TokenSigner(b"x" * 32, clock=Clock())
    assert reason(lambda: other.verify(tok, mac=MAC)) == "bad_signature"
    for bad in ("", "v1", "v2.a.b", "v1.a.b.c", "v1.!!.??", tok + "x", "v1." + payload + "."):
        assert reason(lambda: s.verify(bad, mac=MAC)) in ("malformed", "bad_signature")


def test_replay_of_single_use_token_and_revocation() -> None:
    c = Clock()
    s = signer(c)
    tok = s.issue(MAC, "alice", purpose="login")
    s.verify(tok, mac=MAC, purpose="login", once=True)
    assert reason(lambda: s.verify(tok, mac=MAC, purpose="login", once=True)) == "replayed"
    boot = s.issue(MAC, "alice")
    s.verify(boot, mac=MAC)
    s.verify(boot, mac=MAC)  # multi-use within its life (kernel, initrd, ...)
    s.revoke_machine(MAC)
    assert reason(lambda: s.verify(boot, mac=MAC)) == "revoked"
    c.t += 1
    s.verify(s.issue(MAC, "alice"), mac=MAC)  # a new login after the revoke works


def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    p = tmp_path / "auth" / "token.key"
    k1 = load_or_create_key(p)
    assert len(k1) == 32 and stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert load_or_create_key(p) == k1
    a = TokenSigner.from_data_dir(tmp_path).issue(MAC, "u")
    TokenSigner.from_data_dir(tmp_path).verify(a, mac=MAC)
    p.write_bytes(b"short")
    with pytest.raises(ValueError, match="shorter"):
        load_or_create_key(p)


@pytest.mark.parametrize("raw", ["aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff", "AABBCCDDEEFF", "aa:bb:cc:dd:ee:ff",
                                 "AA:BB:CC:DD:EE:FF"])
def test_normalize_mac_vendor_formats(raw: str) -> None:
    assert normalize_mac(raw) == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("raw", ["", "aabbccddeef", "aabbccddeeffaa", "gg:bb:cc:dd:ee:ff"])
def test_normalize_mac_rejects(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(raw)
