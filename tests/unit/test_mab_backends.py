"""[mab] config: every backend selectable from bootgate.toml, several at once, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootgate.config import ConfigError, load_settings
from bootgate.integrations.backends import build_mab
from bootgate.integrations.freeradius_sql import FreeRadiusSqlBackend, sql_url
from bootgate.integrations.mab import FreeRadiusRestBackend
from bootgate.integrations.nps import NpsBackend

NPS = '''nac_url = "ldaps://dc.corp.example:636"
nac_username = "svc-bootgate@corp.example"
nac_password = "pw"
nps_ou = "OU=MAB,DC=corp,DC=example"
nps_group = "CN=MAB Imaging,OU=MAB,DC=corp,DC=example"'''


def load(tmp_path: Path, mab: str) -> object:
    f = tmp_path / "bootgate.toml"
    f.write_text(f'[server]\ndata_dir = "{tmp_path}"\n[mab]\n{mab}\n')
    return load_settings(f)


def test_freeradius_sql_and_nps_together(tmp_path: Path) -> None:
    s = load(tmp_path, f'backend = "freeradius, freeradius-sql,nps"\nsql_url = "sqlite:///{tmp_path}/mab.db"\n'
                       f'coa_targets = "127.0.0.1:3799"\ncoa_secret = "s"\n{NPS}\nnps_revoke = "delete"')
    mab = s.security.mab  # type: ignore[attr-defined]
    assert mab.backends == ("freeradius", "freeradius-sql", "nps")
    manager, table = build_mab(mab, tmp_path)
    assert manager is not None and table is not None
    rest, sql, nps = manager.backends
    assert isinstance(rest, FreeRadiusRestBackend) and rest.table is table
    assert isinstance(sql, FreeRadiusSqlBackend) and sql.url == f"sqlite+aiosqlite:///{tmp_path}/mab.db"
    assert sql.table == "bootgate_mab" and sql.coa_targets[0].port == 3799
    assert isinstance(nps, NpsBackend) and nps.revoke_mode == "delete" and nps.mac_format == "bare"
    assert nps.coa_targets == sql.coa_targets
    assert manager.state_path == tmp_path / "auth" / "mab_state.json"


def test_no_backend_no_manager(tmp_path: Path) -> None:
    assert build_mab(load(tmp_path, "").security.mab, tmp_path) == (None, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("mab", "key"), [
    ('backend = "radius"', "backend"),
    ('backend = "nps, nps"\n' + NPS, "backend"),
    ('backend = "freeradius-sql"', "sql_url"),
    ('backend = "freeradius-sql"\nsql_url = "mysql://x/y"', "sql_url"),
    ('backend = "freeradius-sql"\nsql_url = "sqlite:///x.db"\nsql_table = "bad; drop"', "sql_table"),
    ('backend = "nps"\nnac_url = "https://dc"\nnps_ou = "OU=x"\nnac_username = "u"\nnac_password = "p"', "nac_url"),
    ('backend = "nps"\nnac_url = "ldaps://dc"\nnac_username = "u"\nnac_password = "p"', "nps_ou"),
    ('backend = "nps"\n' + NPS + '\nnps_mac_format = "colon"', "nps_mac_format"),
    ('backend = "nps"\n' + NPS + '\nnps_revoke = "shred"', "nps_revoke"),
    ('backend = "nps"\nnac_url = "ldaps://dc"\nnps_ou = "OU=x"', "nac_username"),
    ('backend = "freeradius"\ncoa_targets = "127.0.0.1:3799"', "coa_secret"),
    ('backend = "freeradius"\ncoa_targets = "switch1"', "coa_targets"),
])
def test_errors_name_the_key(tmp_path: Path, mab: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(tmp_path, mab)


def test_sql_urls() -> None:
    assert sql_url("postgresql://radius@db/radius") == "postgresql+asyncpg://radius@db/radius"
    assert sql_url("sqlite:////var/lib/x.db") == "sqlite+aiosqlite:////var/lib/x.db"
    with pytest.raises(ValueError):
        sql_url("mysql://db/x")
    with pytest.raises(ValueError):
        FreeRadiusSqlBackend("sqlite:///x.db", table="x; drop table y")
