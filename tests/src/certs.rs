//! Test certificates: a CA, a server certificate for 127.0.0.1 and localhost, and
//! client certificates, written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and what it signed, as files.
pub struct TestCa {
    dir: tempfile::TempDir,
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new() -> Result<TestCa> {
        let dir = tempfile::Builder::new().prefix("karst-certs-").tempdir()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name = name(&[(DnType::CommonName, "Karst Test CA")]);
        let cert = params.self_signed(&key)?;
        std::fs::write(dir.path().join("ca.pem"), cert.pem())?;
        Ok(TestCa { dir, key, cert })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM), what clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 and localhost with its key, both in
    /// `<file>.pem` (Kafka's PEM keystore: the key, then the chain); returns the path.
    pub fn server(&self, file: &str, cn: &str) -> Result<PathBuf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params.distinguished_name = name(&[(DnType::CommonName, cn)]);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let path = self.dir.path().join(format!("{file}.pem"));
        write_atomically(&path, format!("{}{}", key.serialize_pem(), cert.pem()))?;
        Ok(path)
    }

    /// A client certificate with subject `CN=<cn>,O=Karst Tests`: (certificate, key) files.
    pub fn client(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(&[(DnType::OrganizationName, "Karst Tests"), (DnType::CommonName, cn)]);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let (c, k) = (self.dir.path().join(format!("{cn}.crt")), self.dir.path().join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }
}

fn name(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
    }
    dn
}

/// Replaces `path` in one rename, so a reader never sees half a file.
fn write_atomically(path: &Path, text: String) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
