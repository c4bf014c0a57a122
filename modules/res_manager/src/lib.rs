//! res_manager: Asterisk's Manager Interface (AMI) on TCP, so that existing AMI clients
//! (panoramisk, asterisk-ami, wallboards, click-to-dial) drive Starling unchanged.
//!
//! The plain listener is `bindaddr:port` (5038); with `tlsenable=yes` a second one on
//! `tlsbindaddr` (port 5039) speaks the same protocol over TLS (rustls, the certificate of
//! `tlscertfile`/`tlsprivatekey`; see starling-tls), both at once. A connection that does not
//! finish its TLS handshake within `authtimeout` (a plain client on the TLS port) is closed
//! with a log line; it holds one `authlimit` place meanwhile.
//!
//! Each connection gets `Asterisk Call Manager/9.0.0`, then speaks the AMI message format
//! (`Key: Value` lines, an empty line ends a message). Until `Login` (plain `Secret`, or `Key`
//! = MD5(challenge + secret) after `Challenge`) only Login, Challenge and Logoff are allowed; a
//! wrong login is answered `Authentication failed` and the connection is closed a second later.
//! A logged-in session receives every event of the core's bus ([`starling_core::events`]) its
//! user may read (`read=`) and its `Events:` mask lets through, each as `Event: X`,
//! `Privilege: class,all`, then the event's fields.
//!
//! A client that stops reading never slows the PBX: publishing to the bus never blocks; a
//! session whose socket stays full for `writetimeout` (100 ms) or that falls 4,096 events
//! behind is disconnected with a log line.
//!
//! Actions are answered here (the core ones) or by the module that registered them
//! (chan_sip's `SIPpeers`...) through [`starling_core::manager`].

mod actions;
mod config;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use starling_core::cli::{CliCommand, CliResult};
use starling_core::events::Event;
use starling_core::manager::{Message, MessageReader};
use starling_core::tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use starling_core::tokio::net::{TcpListener, TcpStream};
use starling_core::tokio::sync::{broadcast, mpsc, watch};
use starling_core::{tokio, tracing, verbose, Core, LoadError, Module, ModuleContext, ReloadError};

use crate::config::{ManagerConf, User};

const CONFIG: &str = "manager.conf";
/// What a client is greeted with (Asterisk 20's AMI version, which clients check).
pub const BANNER: &str = "Asterisk Call Manager/9.0.0\r\n";
/// A line longer than this ends the connection.
const MAX_LINE: usize = 16 * 1024;
/// How long a session gathers events before it writes them.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(20);
const COALESCE_STEPS: u32 = 4;
/// A backlog this long is written at once (the bus keeps 4,096 events for a session).
const BACKLOG_NOW: usize = 512;

/// One connected session, as `manager show connected` lists it.
#[derive(Clone, Debug)]
struct SessionInfo {
    user: String,
    addr: SocketAddr,
    since: SystemTime,
    started: Instant,
    read: u32,
    write: u32,
}

/// What the listener, the sessions and the CLI share.
pub(crate) struct State {
    core: Arc<Core>,
    conf: RwLock<Arc<ManagerConf>>,
    sessions: Mutex<BTreeMap<u64, SessionInfo>>,
    next_session: AtomicU64,
    /// Sessions connected and not yet logged in (bounded by `authlimit`).
    unauthenticated: AtomicUsize,
    /// The TLS listener's configuration (made again by a reload, for the connections after it).
    tls: RwLock<Option<starling_tls::tokio_rustls::TlsAcceptor>>,
}

/// One of the `authlimit` places for a session not yet logged in, given back when it logs in
/// or goes (as Asterisk's `unauth_sessions` count).
struct Unauthenticated(Arc<State>);

impl Unauthenticated {
    /// A place, unless `authlimit` sessions already wait to log in.
    fn take(state: &Arc<State>) -> Option<Unauthenticated> {
        let limit = state.conf().authlimit;
        let taken = state.unauthenticated.fetch_add(1, Ordering::AcqRel);
        let place = Unauthenticated(state.clone());
        (taken < limit).then_some(place)
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Ordering::AcqRel);
    }
}

impl State {
    pub(crate) fn conf(&self) -> Arc<ManagerConf> {
        self.conf.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A session's own state.
pub(crate) struct Session {
    pub id: u64,
    pub addr: SocketAddr,
    /// Our end of the connection (LocalAddress in security events).
    pub local: SocketAddr,
    pub user: Option<User>,
    /// The event classes this session receives (the user's `read`, narrowed by `Events:`).
    pub events: u32,
    pub challenge: Option<String>,
    /// Messages for this session alone, written by its loop after the current reply
    /// (FullyBooted after a login). An async Originate's `OriginateResponse` goes on the bus.
    pub later: mpsc::UnboundedSender<String>,
}

impl Session {
    /// Whether `event` goes to this session: logged in, and its class in the session's mask.
    fn wants(&self, event: &Event) -> bool {
        self.user.is_some() && config::class_bit(event.class).is_some_and(|bit| self.events & bit != 0)
    }
}

/// What an action handler tells the session loop to do next.
pub(crate) enum Next {
    Continue,
    /// Write the reply, then close (Logoff).
    Close,
    /// Write the reply, wait a second, then close (a failed login).
    CloseSlowly,
}

/// Reads one message (its headers, until the empty line). `None` at the end of the stream.
async fn read_message<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Message>> {
    let mut message = MessageReader::default();
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut *reader).take(MAX_LINE as u64 + 1).read_line(&mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        if n > MAX_LINE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
        }
        match message.line(&line) {
            Ok(Some(message)) => return Ok(Some(message)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

/// Writes, bounded by `writetimeout`: a client that does not read is dropped.
async fn write_bounded<W: AsyncWrite + Unpin>(
    writer: &mut W,
    text: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, writer.write_all(text.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the client did not read for {} ms", timeout.as_millis())),
    }
}

/// Where a session's bytes come from and go to: a TCP connection or a TLS one.
struct Peer<R, W> {
    reader: R,
    writer: W,
    /// The client's address and ours.
    addr: SocketAddr,
    local: SocketAddr,
}

/// A plain connection's session.
async fn serve_tcp(
    state: Arc<State>,
    stream: TcpStream,
    addr: SocketAddr,
    place: Unauthenticated,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(addr);
    let (reader, writer) = stream.into_split();
    serve_session(state, Peer { reader, writer, addr, local }, place, stop).await
}

/// A TLS connection's session, after its handshake (bounded by `authtimeout`: a client that
/// does not speak TLS is closed, and the listener goes on).
async fn serve_tls(
    state: Arc<State>,
    acceptor: starling_tls::tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    place: Unauthenticated,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(addr);
    let authtimeout = state.conf().authtimeout;
    let stream = match tokio::time::timeout(authtimeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!("Manager: TLS handshake with {addr} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("Manager: TLS handshake with {addr} not done within {} s", authtimeout.as_secs());
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    serve_session(state, Peer { reader, writer, addr, local }, place, stop).await
}

async fn serve_session<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    state: Arc<State>,
    peer: Peer<R, W>,
    place: Unauthenticated,
    mut stop: watch::Receiver<bool>,
) {
    let Peer { reader, mut writer, addr, local } = peer;
    let mut place = Some(place);
    let id = state.next_session.fetch_add(1, Ordering::Relaxed) + 1;
    let mut reader = BufReader::new(reader);
    let mut events: broadcast::Receiver<Arc<Event>> = state.core.events().subscribe();
    let (later_tx, mut later) = mpsc::unbounded_channel();
    let mut session = Session { id, addr, local, user: None, events: 0, challenge: None, later: later_tx };
    let conf = state.conf();
    let writetimeout = conf.writetimeout;
    let login_deadline = tokio::time::Instant::now() + conf.authtimeout;
    if write_bounded(&mut writer, BANNER, writetimeout).await.is_err() {
        return;
    }
    let why = loop {
        let login_timer = async {
            if session.user.is_none() {
                tokio::time::sleep_until(login_deadline).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            message = read_message(&mut reader) => {
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => break None,
                    Err(e) => break Some(format!("bad input: {e}")),
                };
                let (reply, next) = actions::handle(&state, &mut session, message).await;
                if session.user.is_some() {
                    drop(place.take());
                }
                if let Err(e) = write_bounded(&mut writer, &reply, writetimeout).await {
                    break Some(e);
                }
                match next {
                    Next::Continue => {}
                    Next::Close => break None,
                    Next::CloseSlowly => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        break None;
                    }
                }
            }
            event = events.recv() => {
                // Everything already queued goes out in one write (one syscall for a burst).
                let mut batch = String::new();
                let mut coalesced = false;
                let mut next = event;
                let end = loop {
                    match next {
                        Ok(event) => {
                            if session.wants(&event) {
                                batch.push_str(event.rendered());
                            }
                            if event.name == "Shutdown" {
                                break Some(None);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => break Some(Some(format!("it fell {n} events behind"))),
                        Err(broadcast::error::RecvError::Closed) => break Some(None),
                    }
                    if batch.len() >= 64 * 1024 {
                        break None;
                    }
                    // A session is woken at most every COALESCE: what came meanwhile goes in
                    // the same write (a few ms later, instead of one wake-up and one write per
                    // event and session).
                    if !coalesced && !batch.is_empty() {
                        coalesced = true;
                        // In steps, so that a burst (thousands of events in a few ms) is taken
                        // before the session falls too far behind.
                        for _ in 0..COALESCE_STEPS {
                            if events.len() >= BACKLOG_NOW {
                                break;
                            }
                            tokio::time::sleep(COALESCE / COALESCE_STEPS).await;
                        }
                    }
                    next = match events.try_recv() {
                        Ok(event) => Ok(event),
                        Err(broadcast::error::TryRecvError::Empty) => break None,
                        Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                        Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
                    };
                };
                if !batch.is_empty() {
                    if let Err(e) = write_bounded(&mut writer, &batch, writetimeout).await {
                        break Some(e);
                    }
                }
                if let Some(why) = end {
                    break why;
                }
            }
            Some(text) = later.recv() => {
                if let Err(e) = write_bounded(&mut writer, &text, writetimeout).await {
                    break Some(e);
                }
            }
            _ = login_timer => break Some("it did not log in in time".into()),
            _ = stop.changed() => {
                // What was published before the stop (the Shutdown event) still goes out.
                let mut batch = String::new();
                while let Ok(event) = events.try_recv() {
                    if session.wants(&event) {
                        batch.push_str(event.rendered());
                    }
                }
                let _ = write_bounded(&mut writer, &batch, writetimeout).await;
                break None;
            }
        }
    };
    let user = session.user.as_ref().map_or("(not logged in)", |u| u.name.as_str());
    match why {
        Some(why) => tracing::warn!("Manager session of '{user}' from {} disconnected: {why}", addr.ip()),
        None if session.user.is_some() => verbose!(2, "Manager '{user}' logged off from {}", addr.ip()),
        None => {}
    }
    state.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let _ = writer.shutdown().await;
}

impl State {
    /// Records a logged-in session for `manager show connected`.
    pub(crate) fn logged_in(&self, session: &Session) {
        let Some(user) = &session.user else { return };
        let info = SessionInfo {
            user: user.name.clone(),
            addr: session.addr,
            since: SystemTime::now(),
            started: Instant::now(),
            read: user.read,
            write: user.write,
        };
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(session.id, info);
    }
    /// A challenge for `AuthType: MD5`: nine random digits (Asterisk's is `ast_random()`), from
    /// rand's ThreadRng (seeded by the OS), so that one seen tells nothing of the next.
    pub(crate) fn new_challenge(&self) -> String {
        format!("{:09}", rand::random_range(0..1_000_000_000u32))
    }
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

/// Accepts connections on `listener`: plain ones, or TLS ones when `tls` (the acceptor is
/// the state's at each connection, so that a reload's certificate serves the next one).
async fn listen(state: Arc<State>, listener: TcpListener, tls: bool, stop: watch::Receiver<bool>) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => match Unauthenticated::take(&state) {
                    Some(place) if !tls => {
                        tokio::spawn(serve_tcp(state.clone(), stream, addr, place, stop.clone()));
                    }
                    Some(place) => {
                        let acceptor = state.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
                        if let Some(acceptor) = acceptor {
                            tokio::spawn(serve_tls(state.clone(), acceptor, stream, addr, place, stop.clone()));
                        }
                    }
                    // As Asterisk's: closed at once, without a greeting.
                    None => tracing::debug!("Manager: {} sessions wait to log in (authlimit): closing {addr}", state.conf().authlimit),
                },
                Err(e) => {
                    tracing::warn!("Manager: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stopped.changed() => return,
        }
    }
}

fn cli_commands(state: &Arc<State>) -> Vec<CliCommand> {
    let (connected, users, user, commands) = (state.clone(), state.clone(), state.clone(), state.clone());
    vec![
        CliCommand::new(
            "manager show connected",
            "List connected manager interface users",
            "Usage: manager show connected\n  Prints a listing of the users that are currently connected to the\nStarling manager interface.\n",
            move |call| {
                let sessions = connected.sessions.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let row = |cols: [&str; 6]| {
                    format!("  {:<15.15}  {:<55.55}  {:<10.10}  {:<10.10}  {:<10.10}  {:<10.10}\n", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5])
                };
                let mut out = row(["Username", "IP Address", "Start", "Elapsed", "ReadPerms", "WritePerms"]);
                for info in sessions.values() {
                    let since = info.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    out.push_str(&row([
                        &info.user,
                        &info.addr.ip().to_string(),
                        &since.to_string(),
                        &info.started.elapsed().as_secs().to_string(),
                        &format!("{:08x}", info.read),
                        &format!("{:08x}", info.write),
                    ]));
                }
                out.push_str(&format!("{} users connected.\n", sessions.len()));
                call.print(&out);
                CliResult::Success
            },
        ),
        CliCommand::new(
            "manager show users",
            "List configured manager users",
            "Usage: manager show users\n       Prints a listing of all managers that are currently configured on that\n system.\n",
            move |call| {
                let conf = users.conf();
                let mut out = String::from("\nusername\n--------\n");
                for user in &conf.users {
                    out.push_str(&user.name);
                    out.push('\n');
                }
                out.push_str(&format!("-------------------\n{} manager users configured.\n", conf.users.len()));
                call.print(&out);
                CliResult::Success
            },
        ),
        CliCommand::new(
            "manager show user",
            "Display information on a specific manager user",
            "Usage: manager show user <user>\n       Display all information related to the manager user specified.\n",
            move |call| {
                let [name] = call.args() else { return CliResult::ShowUsage };
                let name = name.clone();
                let conf = user.conf();
                let Some(u) = conf.user(&name) else {
                    let _ = writeln!(call, "There is no manager called {name}");
                    return CliResult::Failure;
                };
                let _ = writeln!(call, "\n          username: {}\n            secret: <Set>\n               ACL: {}\n         read perm: {}\n        write perm: {}",
                    u.name, if u.acl.is_empty() { "no" } else { "yes" }, config::class_names(u.read), config::class_names(u.write));
                CliResult::Success
            },
        ),
        CliCommand::new(
            "manager show commands",
            "List manager interface commands",
            "Usage: manager show commands\n\tPrints a listing of all the available Starling manager interface commands.\n",
            move |call| {
                let mut out = format!("  {:<25.25}  {:<15.15}  {:<55.55}\n", "Action", "Privilege", "Synopsis");
                out.push_str(&format!("  {:<25.25}  {:<15.15}  {:<55.55}\n", "------", "---------", "--------"));
                for (name, privilege, synopsis) in actions::all(commands.core()) {
                    out.push_str(&format!("  {name:<25.25}  {privilege:<15.15}  {synopsis:<55.55}\n"));
                }
                call.print(&out);
                CliResult::Success
            },
        ),
    ]
}

struct Manager {
    state: Arc<State>,
    stop: watch::Sender<bool>,
    _cli: starling_core::cli::CliRegistration,
}

impl Module for Manager {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        let conf = ManagerConf::parse(&ctx.load_config(CONFIG)?)?;
        let old = self.state.conf();
        if (old.enabled, old.port, old.bindaddr, old.tls_address())
            != (conf.enabled, conf.port, conf.bindaddr, conf.tls_address())
        {
            tracing::warn!(
                "manager.conf: enabled, port, bindaddr, tlsenable and tlsbindaddr take effect when res_manager is loaded again"
            );
        }
        // New TLS connections present the certificate read now (the files were checked by the parse).
        if old.tls_address().is_some() && conf.tls_address().is_some() {
            let acceptor = conf.tls.server_config().map_err(|e| ReloadError::Config(e.into()))?;
            *self.state.tls.write().unwrap_or_else(|p| p.into_inner()) =
                Some(starling_tls::tokio_rustls::TlsAcceptor::from(acceptor));
        }
        ctx.core().events().set_varset(conf.varset_events);
        *self.state.conf.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(conf);
        Ok(())
    }

    fn unload(self: Box<Self>) {
        // Clients hear that the PBX is going, then every session ends. As asterisk.c's
        // really_quit: Uncleanly while channels are still up (they will be cut off).
        let events = self.state.core.events();
        let how = if self.state.core.channels().active_channels() > 0 { "Uncleanly" } else { "Cleanly" };
        events.publish(Event::new("Shutdown", "system").with("Shutdown", how).with("Restart", "False"));
        let _ = self.stop.send(true);
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        while !self.state.sessions.lock().unwrap_or_else(|p| p.into_inner()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        events.set_varset(false);
    }
}

/// A listener on `address` (`what`: "" or "TLS "), on the core's runtime.
fn bind(ctx: &ModuleContext, address: SocketAddr, what: &str) -> Result<TcpListener, LoadError> {
    let std_listener = std::net::TcpListener::bind(address)
        .map_err(|e| LoadError::Resource(format!("cannot bind the manager {what}on {address}: {e}")))?;
    std_listener.set_nonblocking(true).map_err(|e| LoadError::Resource(format!("manager {what}{address}: {e}")))?;
    let _entered = ctx.runtime().enter();
    TcpListener::from_std(std_listener).map_err(|e| LoadError::Resource(format!("manager {what}{address}: {e}")))
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    if !ctx.config_dir().join(CONFIG).exists() {
        return Err(LoadError::Decline(format!("no {CONFIG} in {}", ctx.config_dir().display())));
    }
    let conf = ManagerConf::parse(&ctx.load_config(CONFIG)?)?;
    let state = Arc::new(State {
        core: ctx.core().clone(),
        conf: RwLock::new(Arc::new(conf.clone())),
        sessions: Mutex::default(),
        next_session: AtomicU64::new(0),
        unauthenticated: AtomicUsize::new(0),
        tls: RwLock::new(None),
    });
    let (stop, stopped) = watch::channel(false);
    if conf.enabled {
        // Both are bound before either serves, so that a port in use stops the load cleanly.
        let address = SocketAddr::new(conf.bindaddr, conf.port);
        let listener = bind(ctx, address, "")?;
        let tls = match conf.tls_address() {
            Some(address) => {
                let acceptor = conf.tls.server_config().map_err(|e| LoadError::Config(e.into()))?;
                *state.tls.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(starling_tls::tokio_rustls::TlsAcceptor::from(acceptor));
                Some((bind(ctx, address, "TLS ")?, address))
            }
            None => None,
        };
        verbose!(2, "Manager interface listening on {address}");
        ctx.runtime().spawn(starling_core::panic::critical_task(
            "The manager listener",
            listen(state.clone(), listener, false, stopped.clone()),
        ));
        if let Some((listener, address)) = tls {
            verbose!(2, "Manager interface listening on TLS {address}");
            ctx.runtime().spawn(starling_core::panic::critical_task(
                "The manager TLS listener",
                listen(state.clone(), listener, true, stopped),
            ));
        }
    } else {
        verbose!(2, "Manager interface disabled (manager.conf: enabled=no)");
    }
    ctx.core().events().set_varset(conf.varset_events);
    let cli = ctx.register_cli(cli_commands(&state))?;
    Ok(Box::new(Manager { state, stop, _cli: cli }))
}

starling_core::module! {
    description: "Asterisk Manager Interface",
    support_level: Core,
    load: load,
}
