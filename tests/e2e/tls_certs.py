# Test certificates from the openssl command line: a CA, server and proxy certificates it signed, an unrelated CA.
import dataclasses
import os
import pathlib
import shutil
import subprocess
import time

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclasses.dataclass
class TestCerts:
    """Paths of PEM files in `dir`. Keys are unencrypted EC P-256 keys, mode 0600."""

    dir: pathlib.Path
    ca_cert: pathlib.Path
    ca_key: pathlib.Path
    server_cert: pathlib.Path  # for PostgreSQL itself
    server_key: pathlib.Path
    proxy_cert: pathlib.Path  # what occproxy shows its clients
    proxy_key: pathlib.Path
    other_ca_cert: pathlib.Path  # signed nothing here: verification against it must fail

    __test__ = False  # not a pytest test class despite its name


def _openssl(*args, cwd):
    result = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def _new_key(path, cwd):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path, cwd=cwd)
    os.chmod(path, 0o600)


def _make_ca(directory, stem, common_name):
    key = directory / f"{stem}.key"
    cert = directory / f"{stem}.crt"
    _new_key(key, directory)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3", "-sha256", "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return cert, key


def _alt_names(names):
    """subjectAltName text: IP: for addresses, DNS: for everything else."""

    def is_address(name):
        return name.replace(".", "").isdigit() or ":" in name

    return ",".join(("IP:" if is_address(n) else "DNS:") + n for n in names)


def _make_leaf(directory, stem, names, ca_cert, ca_key, digest, serial):
    key = directory / f"{stem}.key"
    csr = directory / f"{stem}.csr"
    cert = directory / f"{stem}.crt"
    extensions = directory / f"{stem}.ext"
    _new_key(key, directory)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={names[0]}", cwd=directory)
    extensions.write_text(
        f"subjectAltName={_alt_names(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", serial, "-days", "3",
        f"-{digest}", "-extfile", extensions, "-out", cert,
        cwd=directory,
    )
    csr.unlink()
    extensions.unlink()
    return cert, key


def make_test_certs(directory, server_names=("localhost", "127.0.0.1"), proxy_names=("localhost", "127.0.0.1"),
                    digest="sha256"):
    """Writes the CA, the server and proxy certificates (first name is the CN, all are subjectAltNames) and
    another CA into `directory`. `digest` signs the two leaf certificates (sha256, sha384, sha512), which
    is also the hash of their tls-server-end-point channel binding."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_ca(directory, "ca", "occproxy test CA")
    other_ca_cert, _ = _make_ca(directory, "other_ca", "unrelated test CA")
    server_cert, server_key = _make_leaf(directory, "server", list(server_names), ca_cert, ca_key, digest, 2)
    proxy_cert, proxy_key = _make_leaf(directory, "proxy", list(proxy_names), ca_cert, ca_key, digest, 3)
    return TestCerts(directory, ca_cert, ca_key, server_cert, server_key, proxy_cert, proxy_key, other_ca_cert)


def certificate_text(cert):
    """openssl's readable dump of a certificate, for assertions on names and signature algorithms."""
    return _openssl("x509", "-in", cert, "-noout", "-text", cwd=pathlib.Path(cert).parent)


def _ssl_setting(pg):
    return pg.psql("SHOW ssl").strip()


def enable_server_tls(pg, certs, timeout=30):
    """Turns on TLS in the `pg` fixture's cluster with certs.server_cert/key (reload, no restart). PostgreSQL
    wants the key owned by its OS user with mode 0600, so both files are copied into the data folder."""
    data_dir = pathlib.Path(pg.data_dir)
    cert = data_dir / "occ_test_server.crt"
    key = data_dir / "occ_test_server.key"
    shutil.copyfile(certs.server_cert, cert)
    shutil.copyfile(certs.server_key, key)
    os.chmod(key, 0o600)
    if getattr(pg, "os_user", None):
        shutil.chown(cert, pg.os_user)
        shutil.chown(key, pg.os_user)
    pg.psql(
        f"ALTER SYSTEM SET ssl_cert_file = '{cert}';\n"
        f"ALTER SYSTEM SET ssl_key_file = '{key}';\n"
        "ALTER SYSTEM SET ssl = on;\n"
        "SELECT pg_reload_conf();\n"
    )
    _wait_for_ssl(pg, "on", timeout)


def disable_server_tls(pg, timeout=30):
    """Undoes enable_server_tls."""
    pg.psql(
        "ALTER SYSTEM RESET ssl;\n"
        "ALTER SYSTEM RESET ssl_cert_file;\n"
        "ALTER SYSTEM RESET ssl_key_file;\n"
        "SELECT pg_reload_conf();\n"
    )
    _wait_for_ssl(pg, "off", timeout)


def _wait_for_ssl(pg, wanted, timeout):
    # The postmaster rereads its config asynchronously after pg_reload_conf(); a bad certificate makes it
    # log an error and keep the previous setting, which ends here as a timeout with the server log.
    deadline = time.monotonic() + timeout
    while _ssl_setting(pg) != wanted:
        if time.monotonic() > deadline:
            log = pathlib.Path(pg.log_path).read_text(errors="replace")[-4000:] if hasattr(pg, "log_path") else ""
            raise RuntimeError(f"PostgreSQL did not switch ssl to {wanted} within {timeout}s\n{log}")
        time.sleep(0.1)
