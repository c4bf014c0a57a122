//! TLS for Starling's listeners and clients, as Asterisk's `main/tcptls.c` is for its own: the
//! `tls*` keys every TLS-speaking module reads alike (`ast_tls_read_conf`: chan_sip's
//! `[general]`, manager.conf's `[general]`), and the rustls configurations they make (a server
//! side for connections made to us on `tlsbindaddr`, a client side for those we open). It does
//! no I/O beyond reading the PEM files it is told of; the modules own their sockets.
//!
//! What each key does here (Asterisk's names, OpenSSL's meanings where rustls has them):
//! - `tlsenable` (`sslenable`): whether the module listens for TLS at all.
//! - `tlsbindaddr` (`sslbindaddr`): `address[:port]`; the module says which port is the default.
//! - `tlscertfile` (`sslcert`, `tlscert`; PEM: the certificate chain, and the key unless
//!   `tlsprivatekey` names another file): what we present, as a server and, when a server asks,
//!   as a client.
//! - `tlsprivatekey` (`sslprivatekey`): the key's PEM file.
//! - `tlscafile` / `tlscapath` (`tlscadir`; a PEM bundle / a directory of PEM files): whom we
//!   trust, to verify clients (`tlsverifyclient=yes`) and servers. Without either, servers are
//!   verified against the system's bundle (`/etc/ssl/certs/ca-certificates.crt`).
//! - `tlsverifyclient=yes`: a client must present a certificate signed by those; without one
//!   the handshake fails. `no` (the default) asks for none.
//! - `tlsdontverifyserver=yes`: a server's certificate is not checked (the default is `no`:
//!   checked, against the name the module gives — chan_sip's: the host name it looked up, the
//!   domain of an SRV lookup (RFC 5922), or the address when it was written as one).
//! - `tlsclientmethod` (`sslclientmethod`): `tlsv1_2` limits our connections to TLS 1.2,
//!   `tlsv1_3` to 1.3; the others (`sslv23`, `tlsv1`, `tlsv1_1`, `sslv2`, `sslv3`) are accepted
//!   and mean what rustls offers (TLS 1.2 and 1.3): rustls has no older protocol.
//! - `tlscipher` (`sslcipher`): a list (`:`, `,` or spaces) of cipher suite names as IANA or
//!   OpenSSL write them (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `ECDHE-RSA-AES128-GCM-SHA256`,
//!   `TLS_AES_256_GCM_SHA384`): the suites named that rustls has, both ways. OpenSSL's keywords
//!   (`ALL`, `HIGH`, `DEFAULT`, `!aNULL` ...) name no suite: a list with no suite rustls has
//!   keeps rustls's default set (all of them strong).
//!
//! Every file is read when the configuration is made, so that a certificate that cannot be used
//! is a configuration error at the line of its key (`manager.conf:9: tlscertfile '/x.pem':
//! cannot read it: ...`), found at load and at reload alike.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme, SupportedCipherSuite};
use starling_core::config::{ConfigError, Location, Variable};

pub use rustls;
pub use tokio_rustls;

/// A value of a `.conf` file and the line it was read from (for errors found when it is used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub location: Location,
}

impl Setting {
    pub fn of(var: &Variable) -> Setting {
        Setting { value: var.value.trim().to_owned(), location: var.location.clone() }
    }
    /// `file:line: name 'value': why`.
    pub fn error(&self, name: &str, why: impl std::fmt::Display) -> ConfigError {
        ConfigError::at(&self.location, format!("{name} '{}': {why}", self.value))
    }
}

/// `address` or `address:port` (`[v6]:port` for IPv6), as `bindaddr`-like keys take it.
pub fn split_bindaddr(value: &str) -> Option<(IpAddr, Option<u16>)> {
    let value = value.trim();
    if let Ok(ip) = value.trim_start_matches('[').trim_end_matches(']').parse() {
        return Some((ip, None));
    }
    let (ip, port) = value.rsplit_once(':')?;
    Some((ip.trim_start_matches('[').trim_end_matches(']').parse().ok()?, Some(port.parse().ok()?)))
}

/// `tlsclientmethod`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientMethod {
    /// TLS 1.2 and 1.3 (`sslv23`, the default, and the older names rustls does not have).
    #[default]
    Any,
    Tlsv1_2,
    Tlsv1_3,
}

/// The `tls*` keys of a module's configuration, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConf {
    /// `tlsenable` (no), with its line.
    pub enable: Option<Setting>,
    /// `tlsbindaddr` (the module's `bindaddr` and TLS port when absent).
    pub bindaddr: Option<(IpAddr, Option<u16>)>,
    pub certfile: Option<Setting>,
    pub privatekey: Option<Setting>,
    pub cafile: Option<Setting>,
    pub capath: Option<Setting>,
    pub cipher: Option<Setting>,
    pub clientmethod: ClientMethod,
    /// `tlsverifyclient` (no), with its line.
    pub verifyclient: Option<Setting>,
    /// `tlsdontverifyserver` (no).
    pub dontverifyserver: bool,
}

impl TlsConf {
    pub fn enabled(&self) -> bool {
        self.enable.as_ref().is_some_and(|s| starling_core::config::parse_bool(&s.value) == Some(true))
    }

    pub fn verifies_clients(&self) -> bool {
        self.verifyclient.as_ref().is_some_and(|s| starling_core::config::parse_bool(&s.value) == Some(true))
    }

    /// Where the module listens for TLS when enabled: `tlsbindaddr` (its port, else
    /// `default_port`), else `bindaddr:default_port`.
    pub fn address(&self, bindaddr: IpAddr, default_port: u16) -> Option<SocketAddr> {
        if !self.enabled() {
            return None;
        }
        let (ip, port) = self.bindaddr.unwrap_or((bindaddr, None));
        Some(SocketAddr::new(ip, port.unwrap_or(default_port)))
    }

    /// Reads one `tls*` key (or its `ssl*` spelling, as `ast_tls_read_conf`); `None` when `var`
    /// is not one.
    pub fn key(&mut self, var: &Variable) -> Option<Result<(), ConfigError>> {
        let set = |slot: &mut Option<Setting>| {
            if var.value.trim().is_empty() {
                return Err(var.error("expected a file name"));
            }
            *slot = Some(Setting::of(var));
            Ok(())
        };
        Some(match var.name.to_ascii_lowercase().as_str() {
            "tlsenable" | "sslenable" => var.parse_bool().map(|_| self.enable = Some(Setting::of(var))),
            "tlsbindaddr" | "sslbindaddr" => split_bindaddr(&var.value)
                .ok_or_else(|| var.error("expected an IP address, with a port or not"))
                .map(|a| self.bindaddr = Some(a)),
            "tlscertfile" | "sslcert" | "tlscert" => set(&mut self.certfile),
            "tlsprivatekey" | "sslprivatekey" => set(&mut self.privatekey),
            "tlscafile" => set(&mut self.cafile),
            "tlscapath" | "tlscadir" => set(&mut self.capath),
            "tlscipher" | "sslcipher" | "tlscipher_suite" => {
                self.cipher = Some(Setting::of(var));
                Ok(())
            }
            "tlsclientmethod" | "sslclientmethod" => {
                let method = match var.value.trim().to_ascii_lowercase().as_str() {
                    "tlsv1_2" => ClientMethod::Tlsv1_2,
                    "tlsv1_3" => ClientMethod::Tlsv1_3,
                    "sslv23" | "tlsv1" | "tlsv1_1" | "sslv2" | "sslv3" => ClientMethod::Any,
                    _ => {
                        return Some(
                            Err(var.error("expected tlsv1_2, tlsv1_3, tlsv1, tlsv1_1, sslv23, sslv3 or sslv2")),
                        )
                    }
                };
                self.clientmethod = method;
                Ok(())
            }
            "tlsverifyclient" => var.parse_bool().map(|_| self.verifyclient = Some(Setting::of(var))),
            "tlsdontverifyserver" => var.parse_bool().map(|v| self.dontverifyserver = v),
            _ => return None,
        })
    }

    /// `tlsenable`'s line, where what is missing is reported.
    fn enable_setting(&self) -> Setting {
        self.enable.clone().unwrap_or(Setting {
            value: "yes".into(),
            location: self
                .certfile
                .as_ref()
                .map_or(Location { file: "(tls)".into(), line: 0 }, |s| Location { line: 0, ..s.location.clone() }),
        })
    }

    /// Our certificate chain and its key.
    fn identity(&self) -> Result<Identity, ConfigError> {
        let enable = self.enable_setting();
        let certfile = self.certfile.as_ref().ok_or_else(|| enable.error("tlsenable", "needs tlscertfile"))?;
        let certs = read_certs(&certfile.value).map_err(|why| certfile.error("tlscertfile", why))?;
        let (keyfile, keyname) = match &self.privatekey {
            Some(keyfile) => (keyfile.clone(), "tlsprivatekey"),
            None => (certfile.clone(), "tlscertfile"),
        };
        let key = read_key(&keyfile.value).map_err(|why| keyfile.error(keyname, why))?;
        Ok(Identity { certs, key, keyfile })
    }

    /// The CAs of `tlscafile` and `tlscapath`.
    fn roots(&self) -> Result<RootCertStore, ConfigError> {
        let mut roots = RootCertStore::empty();
        if let Some(cafile) = &self.cafile {
            let certs = read_certs(&cafile.value).map_err(|why| cafile.error("tlscafile", why))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(cafile.error("tlscafile", "no CA certificate in it"));
            }
        }
        if let Some(capath) = &self.capath {
            let entries = std::fs::read_dir(&capath.value).map_err(|e| capath.error("tlscapath", e))?;
            for entry in entries.flatten() {
                // As OpenSSL's CApath: whatever file there holds certificates (hash links included).
                if let Ok(certs) = read_certs(&entry.path().to_string_lossy()) {
                    roots.add_parsable_certificates(certs);
                }
            }
        }
        Ok(roots)
    }

    /// The server side alone (a listener that never connects out: the manager's).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ConfigError> {
        let identity = self.identity()?;
        let provider = Arc::new(provider(self));
        let roots = self.roots()?;
        self.server(identity, roots, provider)
    }

    fn server(
        &self,
        identity: Identity,
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<ServerConfig>, ConfigError> {
        let enable = self.enable_setting();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| enable.error("tlsenable", e))?;
        let builder = if self.verifies_clients() {
            let verifyclient = self.verifyclient.as_ref().unwrap_or(&enable);
            if roots.is_empty() {
                return Err(verifyclient.error("tlsverifyclient", "needs tlscafile or tlscapath"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| verifyclient.error("tlsverifyclient", e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let Identity { certs, key, keyfile } = identity;
        let server = builder
            .with_single_cert(certs, key)
            .map_err(|e| keyfile.error("tlsprivatekey", format!("does not go with tlscertfile: {e}")))?;
        Ok(Arc::new(server))
    }
}

/// A certificate chain, its key and the file the key came from (for errors).
struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    keyfile: Setting,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity { certs: self.certs.clone(), key: self.key.clone_key(), keyfile: self.keyfile.clone() }
    }
}

/// The two sides made from a [`TlsConf`]: a server side for the connections made to us and a
/// client side for those we open (chan_sip's).
pub struct TlsContext {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsContext")
    }
}

impl TlsContext {
    /// Reads the files `conf` names and makes both configurations; what is wrong is a config
    /// error at the line of the key concerned (at `tlsenable`'s for what is missing).
    pub fn new(conf: &TlsConf) -> Result<TlsContext, ConfigError> {
        let identity = conf.identity()?;
        let mut roots = conf.roots()?;
        let provider = Arc::new(provider(conf));
        let server = conf.server(identity.clone(), roots.clone(), provider.clone())?;

        let enable = conf.enable_setting();
        let versions: &[&rustls::SupportedProtocolVersion] = match conf.clientmethod {
            ClientMethod::Any => rustls::DEFAULT_VERSIONS,
            ClientMethod::Tlsv1_2 => &[&rustls::version::TLS12],
            ClientMethod::Tlsv1_3 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| enable.error("tlsclientmethod", e))?;
        let builder = if conf.dontverifyserver {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(DontVerifyServer(provider.clone())))
        } else {
            if conf.cafile.is_none() && conf.capath.is_none() {
                add_system_roots(&mut roots);
            }
            builder.with_root_certificates(roots)
        };
        let Identity { certs, key, keyfile } = identity;
        let client = builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| keyfile.error("tlsprivatekey", format!("does not go with tlscertfile: {e}")))?;
        Ok(TlsContext {
            acceptor: tokio_rustls::TlsAcceptor::from(server),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }

    /// The name a server at `remote` must have in its certificate when it was not looked up
    /// by name: its address.
    pub fn server_name(remote: SocketAddr) -> ServerName<'static> {
        ServerName::IpAddress(remote.ip().into())
    }
}

/// How a client that is not chan_sip checks the server it reaches (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCheck {
    /// Any certificate (the handshake's signature still checked): libpq's `prefer`/`require`.
    Nothing,
    /// Signed by a trusted CA, whatever name it is for: libpq's `verify-ca`.
    Chain,
    /// Signed by a trusted CA and for the name (or address) we reached: libpq's `verify-full`.
    ChainAndName,
}

/// A client side of its own (a database client's): TLS 1.2 and 1.3, no certificate of ours,
/// servers checked as `check` says against the CAs of `cafile` (a PEM bundle), else the
/// system's. An unreadable `cafile` is an error at its line, named `key`.
pub fn client_config(check: ServerCheck, cafile: Option<&Setting>, key: &str) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(ring_provider());
    let mut roots = RootCertStore::empty();
    match cafile {
        Some(cafile) => {
            let certs = read_certs(&cafile.value).map_err(|why| cafile.error(key, why))?;
            if roots.add_parsable_certificates(certs).0 == 0 {
                return Err(cafile.error(key, "no CA certificate in it"));
            }
        }
        None => add_system_roots(&mut roots),
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::at(&Location { file: "(tls)".into(), line: 0 }, e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        ServerCheck::Nothing => Arc::new(DontVerifyServer(provider)),
        ServerCheck::Chain | ServerCheck::ChainAndName => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| match cafile {
                    Some(cafile) => cafile.error(key, e),
                    None => ConfigError::at(
                        &Location { file: SYSTEM_BUNDLE.into(), line: 0 },
                        format!("no CA to verify servers with: {e}"),
                    ),
                })?;
            if check == ServerCheck::Chain {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `verify-ca`: webpki's checks but the name's (which webpki makes last, once the chain is
/// known good).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Debian's bundle of the system's trusted CAs (package ca-certificates).
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Adds the system's trusted CAs (none when the bundle cannot be read).
fn add_system_roots(roots: &mut RootCertStore) {
    if let Ok(system) = read_certs(SYSTEM_BUNDLE) {
        roots.add_parsable_certificates(system);
    }
}

fn pem_error(e: rustls::pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        rustls::pki_types::pem::Error::NoItemsFound => format!("no PEM {what} in it"),
        e => format!("bad PEM: {e}"),
    }
}

/// Why `path` cannot be read as a file, if it cannot.
fn unreadable(path: &str) -> Option<String> {
    if Path::new(path).is_file() {
        return None;
    }
    Some(match std::fs::metadata(path) {
        Err(e) => format!("cannot read it: {e}"),
        Ok(_) => "not a file".to_owned(),
    })
}

/// The certificates of a PEM file; an error when it cannot be read or holds none.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if let Some(why) = unreadable(path) {
        return Err(why);
    }
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, "certificate"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(certs)
}

/// The private key of a PEM file.
fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    if let Some(why) = unreadable(path) {
        return Err(why);
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(e, "private key"))
}

/// ring's provider, with the cipher suites `tlscipher` names when it names any.
fn provider(conf: &TlsConf) -> CryptoProvider {
    let mut provider = ring_provider();
    if let Some(cipher) = &conf.cipher {
        let chosen = chosen_suites(&cipher.value, &provider.cipher_suites);
        if !chosen.is_empty() {
            provider.cipher_suites = chosen;
        }
    }
    provider
}

fn ring_provider() -> CryptoProvider {
    // ring (no cmake, no C toolchain beyond ring's own) rather than aws-lc-rs, at the price of
    // the post-quantum key exchange rustls now says ring lacks: hence the allow.
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

/// The suites of `available` that `list` names (IANA or OpenSSL spelling), in `list`'s order.
fn chosen_suites(list: &str, available: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for word in list.split([':', ',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
        let wanted = normalize(word);
        for suite in available {
            let iana = format!("{:?}", suite.suite()).replace("TLS13_", "TLS_");
            if (normalize(&iana) == wanted || openssl_name(&iana).is_some_and(|o| normalize(&o) == wanted))
                && !chosen.iter().any(|c| c.suite() == suite.suite())
            {
                chosen.push(*suite);
            }
        }
    }
    chosen
}

fn normalize(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// OpenSSL's name of a TLS 1.2 suite from its IANA name (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`
/// is `ECDHE-RSA-AES128-GCM-SHA256`); TLS 1.3 suites have the same name both ways.
fn openssl_name(iana: &str) -> Option<String> {
    let rest = iana.strip_prefix("TLS_")?;
    let (kx, cipher) = rest.split_once("_WITH_")?;
    let cipher = cipher.replace("AES_128", "AES128").replace("AES_256", "AES256");
    let cipher = cipher.strip_suffix("_SHA256").filter(|c| c.contains("CHACHA")).map_or(cipher.clone(), str::to_owned);
    Some(format!("{kx}_{cipher}"))
}

/// `tlsdontverifyserver=yes`: any certificate is taken (the handshake's signature is still
/// checked, so the server holds the key of the certificate it shows).
#[derive(Debug)]
struct DontVerifyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for DontVerifyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> Variable {
        Variable {
            name: name.into(),
            value: value.into(),
            location: Location { file: "sip.conf".into(), line: 7 },
            object: false,
            inherited: false,
        }
    }

    fn conf(lines: &[(&str, &str)]) -> Result<TlsConf, ConfigError> {
        let mut conf = TlsConf::default();
        for (name, value) in lines {
            conf.key(&var(name, value)).expect("a tls key")?;
        }
        Ok(conf)
    }

    #[test]
    fn keys_and_defaults() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let c = conf(&[]).unwrap();
        assert!(!c.enabled());
        assert_eq!(c.address(any, 5061), None, "tlsenable=no");
        let c = conf(&[("tlsenable", "yes")]).unwrap();
        assert_eq!(c.address(any, 5061), Some("0.0.0.0:5061".parse().unwrap()));
        assert_eq!(c.address(any, 5039), Some("0.0.0.0:5039".parse().unwrap()));
        let c = conf(&[("tlsenable", "yes"), ("tlsbindaddr", "127.0.0.2")]).unwrap();
        assert_eq!(c.address(any, 5061), Some("127.0.0.2:5061".parse().unwrap()));
        let c = conf(&[("tlsenable", "yes"), ("tlsbindaddr", "[::1]:5081")]).unwrap();
        assert_eq!(c.address(any, 5061), Some("[::1]:5081".parse().unwrap()));
        let c = conf(&[
            ("tlscertfile", "/k/a.pem"),
            ("tlsprivatekey", "/k/a.key"),
            ("tlscafile", "/k/ca.pem"),
            ("tlscapath", "/k/ca"),
            ("tlscipher", "ALL"),
            ("tlsclientmethod", "tlsv1_2"),
            ("tlsverifyclient", "yes"),
            ("tlsdontverifyserver", "yes"),
        ])
        .unwrap();
        assert_eq!(c.certfile.as_ref().map(|s| s.value.as_str()), Some("/k/a.pem"));
        assert_eq!(c.privatekey.as_ref().map(|s| s.value.as_str()), Some("/k/a.key"));
        assert_eq!(c.clientmethod, ClientMethod::Tlsv1_2);
        assert!(c.verifies_clients() && c.dontverifyserver);
        assert_eq!(conf(&[("tlsclientmethod", "sslv23")]).unwrap().clientmethod, ClientMethod::Any);
        assert!(TlsConf::default().key(&var("bindport", "5060")).is_none(), "not a tls key");
        let c = conf(&[("sslenable", "yes"), ("sslcert", "/k/b.pem"), ("sslbindaddr", "127.0.0.1:5040")]).unwrap();
        assert!(c.enabled(), "ast_tls_read_conf's ssl* spellings");
        assert_eq!(c.certfile.as_ref().map(|s| s.value.as_str()), Some("/k/b.pem"));
        assert_eq!(c.address(any, 5039), Some("127.0.0.1:5040".parse().unwrap()));
    }

    #[test]
    fn bad_values_are_errors_at_their_line() {
        for (name, value) in [
            ("tlsenable", "maybe"),
            ("tlsbindaddr", "nowhere"),
            ("tlsclientmethod", "dtls"),
            ("tlsverifyclient", "2"),
            ("tlsdontverifyserver", "x"),
            ("tlscertfile", ""),
        ] {
            let e = conf(&[(name, value)]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("sip.conf:7: {name} '")), "{e}");
        }
    }

    #[test]
    fn bindaddr_with_and_without_port() {
        assert_eq!(split_bindaddr("127.0.0.1"), Some(("127.0.0.1".parse().unwrap(), None)));
        assert_eq!(split_bindaddr(" 127.0.0.1:5039 "), Some(("127.0.0.1".parse().unwrap(), Some(5039))));
        assert_eq!(split_bindaddr("[::1]:5039"), Some(("::1".parse().unwrap(), Some(5039))));
        assert_eq!(split_bindaddr("::1"), Some(("::1".parse().unwrap(), None)));
        for bad in ["", ":", "host:5039", "127.0.0.1:port", "127.0.0.1:70000", "[::1]:", "1.2.3.4.5"] {
            assert_eq!(split_bindaddr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn missing_files_are_errors_at_their_line() {
        let e = TlsContext::new(&conf(&[("tlsenable", "yes")]).unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "sip.conf:7: tlsenable 'yes': needs tlscertfile");
        let e = TlsContext::new(&conf(&[("tlsenable", "yes"), ("tlscertfile", "/nonexistent/x.pem")]).unwrap())
            .unwrap_err();
        assert!(e.to_string().starts_with("sip.conf:7: tlscertfile '/nonexistent/x.pem': cannot read it"), "{e}");
        let e =
            conf(&[("tlsenable", "yes"), ("tlscertfile", "/nonexistent/x.pem")]).unwrap().server_config().unwrap_err();
        assert!(e.to_string().starts_with("sip.conf:7: tlscertfile '/nonexistent/x.pem': cannot read it"), "{e}");
        let dir = std::env::temp_dir().join(format!("starling-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = TlsContext::new(&conf(&[("tlsenable", "yes"), ("tlscertfile", &junk.to_string_lossy())]).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("no PEM certificate in it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tlscipher_names_suites_either_way() {
        let available = ring_provider().cipher_suites;
        let names = |list: &str| -> Vec<String> {
            chosen_suites(list, &available).iter().map(|s| format!("{:?}", s.suite())).collect()
        };
        assert_eq!(names("ALL:!aNULL"), Vec::<String>::new(), "OpenSSL keywords name no suite");
        assert_eq!(
            names("ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384"),
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384"].map(String::from)
        );
        assert_eq!(
            names("tls_ecdhe_ecdsa_with_chacha20_poly1305_sha256"),
            ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]
        );
        assert_eq!(names("ECDHE-ECDSA-CHACHA20-POLY1305"), ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]);
    }
}
