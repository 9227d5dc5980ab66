//! Test certificates made with the openssl command: a CA, a server
//! certificate for an IP address and a client certificate signed by it,
//! and a second CA that signed nothing, as an etcd cluster with client
//! certificate auth uses them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::TempDir;

#[derive(Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    _dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().context("cannot run openssl")?;
    if !out.status.success() {
        bail!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn ca(dir: &Path, name: &str) -> anyhow::Result<()> {
    let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={name}"));
    let mut a = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt];
    a.extend(EC);
    a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &a)
}

/// A leaf signed by `ca.crt`, with `ext` (subjectAltName, extendedKeyUsage).
fn leaf(dir: &Path, name: &str, ext: &str) -> anyhow::Result<()> {
    let (key, csr, crt, subj) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("/CN={name}"));
    let mut a = vec!["req", "-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr];
    a.extend(EC);
    openssl(dir, &a)?;
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &extfile,
        ],
    )
}

impl Pki {
    pub fn installed() -> bool {
        Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
    }

    /// Certificates for a server at `ip`.
    pub fn new(ip: IpAddr) -> anyhow::Result<Self> {
        let dir = TempDir::new("pki")?;
        let d = dir.path();
        ca(d, "ca")?;
        ca(d, "other-ca")?;
        leaf(d, "server", &format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"))?;
        leaf(d, "client", "extendedKeyUsage=clientAuth\n")?;
        Ok(Self {
            ca: d.join("ca.crt"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            other_ca: d.join("other-ca.crt"),
            _dir: dir,
        })
    }
}
