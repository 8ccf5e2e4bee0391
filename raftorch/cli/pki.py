"""`raftctl pki`: the cluster CA on a master's disk, and user certificates made with it."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from raftorch.auth import pki as pkilib
from raftorch.auth.identity import USER_ROLES, Identity
from raftorch.cli.context import handle_errors
from raftorch.errors import Invalid


@click.group()
def pki() -> None:
    """The cluster CA (on a master) and client certificates made with it.

    \b
    Example:
      raftctl pki init /etc/raftorch/pki
      raftctl pki issue admin --role admin --pki-dir /etc/raftorch/pki \\
          --endpoints 10.0.0.11:2379 --config /etc/raftorch/admin.yaml
    """


@pki.command()
@click.argument("pki_dir", type=click.Path(path_type=Path))
@handle_errors
def init(pki_dir: Path) -> None:
    """Create the cluster CA in PKI_DIR (ca.crt, ca.key) unless it is there; print its hash.

    \b
    Example:
      raftctl pki init /etc/raftorch/pki
    """
    ca, created = pkilib.ensure_ca(pki_dir)
    click.echo(pkilib.ca_hash(ca.cert_pem))
    click.echo(f"{'created' if created else 'kept'} the cluster CA in {pki_dir}; copy ca.crt and ca.key to "
               "every master's pki-dir", err=True)


@pki.command("hash")
@click.argument("ca_file", type=click.Path(path_type=Path))
@handle_errors
def hash_(ca_file: Path) -> None:
    """Print the pin of a CA certificate (sha256 of its public key), for --ca-hash.

    \b
    Example:
      raftctl pki hash /etc/raftorch/pki/ca.crt
    """
    try:
        click.echo(pkilib.ca_hash(pkilib.read_file(ca_file, "CA certificate")))
    except ValueError:
        raise Invalid(f"{ca_file}: not a PEM certificate") from None


@pki.command()
@click.argument("name")
@click.option("--role", type=click.Choice(list(USER_ROLES)), required=True)
@click.option("--namespace", default="", help="Limit the user to this namespace.")
@click.option("--pki-dir", type=click.Path(path_type=Path), required=True, help="Where ca.crt and ca.key are.")
@click.option("--endpoints", required=True, help="The masters: HOST:PORT,...")
@click.option("--config", "out", type=click.Path(path_type=Path), required=True,
              help="The client config to write; the certificate and key go next to it.")
@handle_errors
def issue(name: str, role: str, namespace: str, pki_dir: Path, endpoints: str, out: Path) -> None:
    """Make a client certificate for user NAME with the CA, and a client config using it.

    \b
    Example:
      raftctl pki issue alice --role edit --namespace team-a --pki-dir /etc/raftorch/pki \\
          --endpoints 10.0.0.11:2379,10.0.0.12:2379 --config alice.yaml
    """
    if not (pki_dir / "ca.key").exists():
        raise Invalid(f"{pki_dir}: no ca.key (run this on a master, or `raftctl pki init` first)")
    ca, _ = pkilib.ensure_ca(pki_dir)
    pair = pkilib.issue_pair(ca, Identity("user", name, role, namespace or None))  # type: ignore[arg-type]
    stem = out.with_suffix("")
    cert, key, ca_file = Path(f"{stem}.crt"), Path(f"{stem}.key"), Path(f"{stem}-ca.crt")
    pkilib.save_pair(pair, cert, key)
    pkilib.write_public(ca_file, ca.cert_pem)
    config = {"endpoints": [e.strip() for e in endpoints.split(",") if e.strip()], "ca-file": str(ca_file.resolve()),
              "cert-file": str(cert.resolve()), "key-file": str(key.resolve())}
    pkilib.write_private(out, yaml.safe_dump(config, sort_keys=False).encode())
    click.echo(f"wrote {out} (user {name}, role {role}{', namespace ' + namespace if namespace else ''})")
