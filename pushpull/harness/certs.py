"""The certificates of a run over TLS (`--tls on`): a private CA made for the run by trustme (the
library made for exactly this) and a server certificate it signs for the addresses the servers
and nginx answer on, written to the run folder's tls/; or the user's own (`--tls-cert`,
`--tls-key`, `--tls-ca`). Every client of the run trusts that CA alone (pushpull/core/tls.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path

from pushpull.harness.config import UsageError


@dataclass(frozen=True)
class TLSFiles:
    cert: str  # the server's certificate chain (PEM)
    key: str  # its private key (PEM)
    ca: str  # the CA the clients verify it against (PEM)
    made_for_run: bool = False
    names: tuple[str, ...] = ()  # the names and addresses the certificate was made for

    def as_dict(self) -> dict:
        return asdict(self)


def make(folder: Path, hosts: list[str]) -> TLSFiles:
    """A new CA and a server certificate for localhost, 127.0.0.1, ::1 and `hosts`."""
    import trustme

    names = list(dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]))
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="pushpull run CA")
    server = ca.issue_cert(*names)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["server"]), append=index > 0)
    paths["server-key"].chmod(0o600)
    return TLSFiles(
        str(paths["server"]), str(paths["server-key"]), str(paths["ca"]), True, tuple(names)
    )


def given(cert: str | None, key: str | None, ca: str | None) -> TLSFiles | None:
    """The user's --tls-cert/--tls-key/--tls-ca, checked (one line for a missing or unreadable
    file, or an incomplete set); None when none is given."""
    flags = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
    if not any(flags.values()):
        return None
    missing = [flag for flag, value in flags.items() if not value]
    if missing:
        raise UsageError(
            f"{missing[0]}: missing (your own certificate needs --tls-cert, --tls-key and "
            "--tls-ca together; or give none and each run makes its own CA)"
        )
    return TLSFiles(*(pem_file(flag, value) for flag, value in flags.items()))


def pem_file(flag: str, value: str) -> str:
    """`value` resolved, once it is a readable PEM file; else one line naming `flag`."""
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"{flag}: {value}: no such file (a PEM file is expected)")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag}: {value}: {exc.strerror}") from None
    if b"-----BEGIN" not in text:
        raise UsageError(f"{flag}: {value}: not a PEM file (no -----BEGIN line)")
    return str(path.resolve())


def given_ca(ca: str | None) -> TLSFiles | None:
    """--tls-ca alone (a --target's CA), checked like given()'s."""
    return None if ca is None else TLSFiles("", "", pem_file("--tls-ca", ca))


def address_names(hosts: list[str]) -> list[str]:
    """The hosts that are addresses or names worth putting in a certificate."""
    names = []
    for host in hosts:
        if not host or host in ("0.0.0.0", "::"):
            continue
        try:
            names.append(str(ipaddress.ip_address(host)))
        except ValueError:
            names.append(host)
    return names
