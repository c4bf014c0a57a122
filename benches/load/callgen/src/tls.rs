//! SIP over TLS for the generator (`--tls-ca`): the caller's one connection to Starling, and
//! the connections Starling opens to our uas. Blocking-free: each [`Link`] is a nonblocking
//! TCP socket under a rustls connection (the same rustls, on ring, as Starling's crates/tls),
//! read and written by the main loop between its polls; SIP messages are cut out of the
//! stream by their Content-Length.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring, as Starling's crates/tls (which says why: no post-quantum key exchange there).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts the CA in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert.with_context(|| format!("{}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server configuration with the certificate chain `cert` and its key `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// One TLS connection carrying SIP.
pub struct Link {
    conn: rustls::Connection,
    tcp: TcpStream,
    /// The far end's address (what the SIP engine sees as a message's source).
    pub peer: SocketAddr,
    /// Plain bytes read and not yet a whole message.
    inbuf: Vec<u8>,
    /// The connection is over (closed, or a TLS error).
    pub closed: bool,
}

impl Link {
    /// Connects to `to` (blocking until the TCP connection is made; the handshake goes on in
    /// the loop), checking its certificate against `config`'s CA for its IP address.
    pub fn connect(to: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Link> {
        let conn = rustls::ClientConnection::new(config, ServerName::IpAddress(to.ip().into()))?;
        let tcp = TcpStream::connect(to).with_context(|| format!("TLS: cannot connect to {to}"))?;
        Link::new(conn.into(), tcp, to)
    }

    /// Takes a connection Starling opened to our uas.
    pub fn accept(tcp: TcpStream, peer: SocketAddr, config: Arc<rustls::ServerConfig>) -> Result<Link> {
        let conn = rustls::ServerConnection::new(config)?;
        Link::new(conn.into(), tcp, peer)
    }

    fn new(mut conn: rustls::Connection, tcp: TcpStream, peer: SocketAddr) -> Result<Link> {
        tcp.set_nonblocking(true)?;
        tcp.set_nodelay(true)?;
        conn.set_buffer_limit(None);
        let mut link = Link { conn, tcp, peer, inbuf: Vec::new(), closed: false };
        link.flush();
        Ok(link)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// Reads what has come: whole SIP messages go into `messages`.
    pub fn read(&mut self, messages: &mut Vec<Vec<u8>>) {
        loop {
            match self.conn.read_tls(&mut self.tcp) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        eprintln!("starling-callgen: TLS with {}: {e}", self.peer);
                        self.closed = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        let mut chunk = [0u8; 16_384];
        loop {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(_) => break, // WouldBlock: nothing more in plain text for now
            }
        }
        while let Some(len) = message_length(&self.inbuf) {
            messages.push(self.inbuf.drain(..len).collect());
        }
        self.flush();
    }

    /// Queues a message and sends what the socket takes now (the rest at the next flush).
    pub fn send(&mut self, data: &[u8]) {
        let _ = self.conn.writer().write_all(data);
        self.flush();
    }

    /// Sends what is queued, as far as the socket takes it.
    pub fn flush(&mut self) {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }
}

/// The length of the first whole message in `buf` (head and Content-Length bytes of body),
/// if it is all there. A bare CRLF keep-alive is a message of its own (SIP's parser says so).
fn message_length(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        let crlfs = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        return Some(crlfs);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let body = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name == "l").then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + body).then_some(end + body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_by_content_length() {
        let one = b"SIP/2.0 200 OK\r\nContent-Length: 4\r\n\r\nv=0\n";
        let mut stream = one.to_vec();
        stream.extend_from_slice(b"BYE sip:x SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(message_length(&stream), Some(one.len()));
        assert_eq!(message_length(&stream[one.len()..]), Some(stream.len() - one.len()));
        assert_eq!(message_length(&one[..one.len() - 1]), None, "the body is not all there");
        assert_eq!(message_length(b"INVITE sip:x SIP/2.0\r\n"), None);
        assert_eq!(message_length(b"\r\n\r\nBYE"), Some(4));
        assert_eq!(message_length(b"X\r\nContent-Length: lots\r\n\r\n"), Some(27), "unreadable: no body");
    }
}
