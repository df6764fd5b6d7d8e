"""Certificates for QEMU's tls-creds-x509 objects, made in the test with
certtool (gnutls-bin): a CA, a server certificate for a host's address and
a client certificate, laid out in the folders QEMU reads
(ca-cert.pem, server-cert.pem, server-key.pem; client-cert.pem,
client-key.pem)."""
import os
import subprocess

CERTTOOL = "certtool"


def _certtool(*args):
    subprocess.run([CERTTOOL] + list(args), check=True, capture_output=True,
                   text=True, timeout=60)


def _template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class CA:
    """A certificate authority in folder; issue() makes a folder of
    credentials for one endpoint."""

    def __init__(self, folder, name="qmproxy test CA"):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.key = os.path.join(folder, "ca-key.pem")
        self.cert = os.path.join(folder, "ca-cert.pem")
        tmpl = os.path.join(folder, "ca.info")
        _template(tmpl, ['cn = "%s"' % name, "ca", "cert_signing_key",
                         "expiration_days = 2"])
        _certtool("--generate-privkey", "--outfile", self.key)
        _certtool("--generate-self-signed", "--load-privkey", self.key,
                  "--template", tmpl, "--outfile", self.cert)

    def issue(self, folder, endpoint, ip=None, cn="qmproxy test"):
        """Credentials for endpoint "server" (for address ip) or
        "client", in folder with this CA's certificate."""
        os.makedirs(folder, exist_ok=True)
        key = os.path.join(folder, "%s-key.pem" % endpoint)
        cert = os.path.join(folder, "%s-cert.pem" % endpoint)
        tmpl = os.path.join(folder, "%s.info" % endpoint)
        lines = ['cn = "%s"' % cn, "expiration_days = 2", "signing_key",
                 "encryption_key"]
        if endpoint == "server":
            lines += ["tls_www_server"] + (["ip_address = %s" % ip] if ip else [])
        else:
            lines += ["tls_www_client"]
        _template(tmpl, lines)
        _certtool("--generate-privkey", "--outfile", key)
        _certtool("--generate-certificate", "--load-privkey", key,
                  "--load-ca-certificate", self.cert, "--load-ca-privkey",
                  self.key, "--template", tmpl, "--outfile", cert)
        with open(self.cert) as src, open(os.path.join(folder, "ca-cert.pem"), "w") as dst:
            dst.write(src.read())
        return folder
