//! Call detail records, as Asterisk's main/cdr.c: the core keeps a chain of [`Cdr`]s on each
//! channel that starts a call (Party A: an inbound leg, an originated channel), fills them in as
//! the call goes (the dialplan's last application, the answer, the party dialled or bridged,
//! the hangup cause) and, when the channel goes, hands every finished [`CdrRecord`] of the chain,
//! in order, to every registered [`CdrBackend`] (cdr_csv, cdr_sqlite3...) and publishes each as
//! the manager's `Cdr` event.
//!
//! The chain follows Asterisk's state machine: one record per Party B. `Dial(SIP/a&SIP/b)` gives
//! the record in force Party B `a` and appends a record (a copy of Party A's side) for `b`; each
//! callee's DialEnd sets its own record's disposition, and ends it unless it answered. A record
//! that has a Party B keeps `Dial` as its last application; once its dial or bridge is over, the
//! dialplan's next application starts the next record (Asterisk's finalized state).
//!
//! What is logged follows `cdr.conf`'s `[general]`: `enable`, `unanswered` (records of calls
//! that were never answered and never reached a second party are dropped unless `yes`),
//! `congestion` (`CONGESTION` rather than `FAILED`), `endbeforehexten` (the record ends when
//! the `h` extension starts, and what it runs is not recorded).
//!
//! Backends must not block the call that ends: [`CdrBackend::log`] queues the record, and the
//! backend writes its queue on a thread of its own, in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::apps::{Registration, Registry};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::events::Event;
use crate::frame::Cause;

mod spool;
mod sqlite;
pub use spool::{RemoteError, RemoteStatus, RemoteWriter, Spool, SpoolingWriter, QUEUE_LIMIT, SPOOL_FILE};
pub use sqlite::SqliteWriter;

/// How a call ended, as Asterisk's `ast_cdr_disp2str` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    NoAnswer,
    Failed,
    Busy,
    Answered,
    Congestion,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::NoAnswer => "NO ANSWER",
            Disposition::Failed => "FAILED",
            Disposition::Busy => "BUSY",
            Disposition::Answered => "ANSWERED",
            Disposition::Congestion => "CONGESTION",
        }
    }

    /// The disposition named as [`Disposition::as_str`] names it.
    pub fn parse(text: &str) -> Option<Disposition> {
        [Disposition::NoAnswer, Disposition::Failed, Disposition::Busy, Disposition::Answered, Disposition::Congestion]
            .into_iter()
            .find(|d| d.as_str() == text)
    }

    /// Asterisk's number for it (`enum ast_cdr_disposition`), as `CDR(disposition,u)` gives it.
    pub fn code(self) -> u32 {
        match self {
            Disposition::NoAnswer => 0,
            Disposition::Failed => 2,
            Disposition::Busy => 4,
            Disposition::Answered => 8,
            Disposition::Congestion => 16,
        }
    }

    /// The disposition a hangup cause gives an unanswered call (`cdr_object_set_disposition`);
    /// `None` leaves it unset, which Asterisk reports as `NO ANSWER`.
    fn from_cause(cause: Cause, congestion: bool) -> Option<Disposition> {
        match cause {
            Cause::USER_BUSY => Some(Disposition::Busy),
            Cause::CONGESTION if congestion => Some(Disposition::Congestion),
            // AST_CAUSE_UNREGISTERED is 20, SUBSCRIBER_ABSENT.
            Cause::CONGESTION | Cause::NO_ROUTE_DESTINATION | Cause::SUBSCRIBER_ABSENT => Some(Disposition::Failed),
            Cause::NORMAL_CLEARING | Cause::NO_ANSWER => Some(Disposition::NoAnswer),
            _ => None,
        }
    }

    /// The disposition `Dial` leaves with its `DIALSTATUS` (`dial_status_to_disposition`).
    pub fn from_dialstatus(status: &str, congestion: bool) -> Disposition {
        match status {
            "ANSWER" => Disposition::Answered,
            "BUSY" => Disposition::Busy,
            "CANCEL" | "NOANSWER" => Disposition::NoAnswer,
            "CONGESTION" if congestion => Disposition::Congestion,
            _ => Disposition::Failed,
        }
    }
}

/// Asterisk's AMA flags (`amaflags=` of a peer, `CDR(amaflags)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AmaFlags {
    Omit,
    Billing,
    #[default]
    Documentation,
}

impl AmaFlags {
    pub fn as_str(self) -> &'static str {
        match self {
            AmaFlags::Omit => "OMIT",
            AmaFlags::Billing => "BILLING",
            AmaFlags::Documentation => "DOCUMENTATION",
        }
    }
    /// Asterisk's number for it (1 omit, 2 billing, 3 documentation).
    pub fn code(self) -> u32 {
        match self {
            AmaFlags::Omit => 1,
            AmaFlags::Billing => 2,
            AmaFlags::Documentation => 3,
        }
    }
    /// By name (any case) or by Asterisk's number (1 omit, 2 billing, 3 documentation).
    pub fn parse(text: &str) -> Option<AmaFlags> {
        match text.trim().to_ascii_lowercase().as_str() {
            "omit" | "1" => Some(AmaFlags::Omit),
            "billing" | "2" => Some(AmaFlags::Billing),
            "documentation" | "default" | "3" => Some(AmaFlags::Documentation),
            _ => None,
        }
    }
}

/// One finished call detail record, as the backends write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrRecord {
    pub accountcode: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: SystemTime,
    pub answer: Option<SystemTime>,
    pub end: SystemTime,
    /// Seconds from start to end.
    pub duration: u64,
    /// Seconds from answer to end (0 unanswered).
    pub billsec: u64,
    pub disposition: Disposition,
    pub amaflags: AmaFlags,
    pub uniqueid: String,
    pub linkedid: String,
    pub userfield: String,
    /// Records of the same channel are numbered from 0 (a channel that dials twice has two).
    pub sequence: u32,
    /// Variables set with `Set(CDR(name)=value)`.
    pub variables: Vec<(String, String)>,
}

/// `YYYY-MM-DD HH:MM:SS` in local time (or UTC), as Asterisk prints CDR times.
pub fn format_time(time: SystemTime, utc: bool) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from(time);
    if utc {
        time.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

impl CdrRecord {
    /// The field `CDR(name)` reads (times as text, durations in seconds); `None` for a name
    /// that is no standard field (a variable, then).
    pub fn field(&self, name: &str) -> Option<String> {
        let time = |t: Option<SystemTime>| t.map(|t| format_time(t, false)).unwrap_or_default();
        Some(match name {
            "accountcode" => self.accountcode.clone(),
            "src" => self.src.clone(),
            "dst" => self.dst.clone(),
            "dcontext" => self.dcontext.clone(),
            "clid" => self.clid.clone(),
            "channel" => self.channel.clone(),
            "dstchannel" => self.dstchannel.clone(),
            "lastapp" => self.lastapp.clone(),
            "lastdata" => self.lastdata.clone(),
            "start" => time(Some(self.start)),
            "answer" => time(self.answer),
            "end" => time(Some(self.end)),
            "duration" => self.duration.to_string(),
            "billsec" => self.billsec.to_string(),
            "disposition" => self.disposition.as_str().to_owned(),
            "amaflags" => self.amaflags.as_str().to_owned(),
            "uniqueid" => self.uniqueid.clone(),
            "linkedid" => self.linkedid.clone(),
            "userfield" => self.userfield.clone(),
            "sequence" => self.sequence.to_string(),
            _ => return None,
        })
    }

    /// The manager's `Cdr` event (cdr_manager's fields and order).
    pub fn event(&self) -> Event {
        let time = |t: Option<SystemTime>| t.map(|t| format_time(t, false)).unwrap_or_default();
        Event::new("Cdr", "cdr")
            .with("AccountCode", &self.accountcode)
            .with("Source", &self.src)
            .with("Destination", &self.dst)
            .with("DestinationContext", &self.dcontext)
            .with("CallerID", &self.clid)
            .with("Channel", &self.channel)
            .with("DestinationChannel", &self.dstchannel)
            .with("LastApplication", &self.lastapp)
            .with("LastData", &self.lastdata)
            .with("StartTime", time(Some(self.start)))
            .with("AnswerTime", time(self.answer))
            .with("EndTime", time(Some(self.end)))
            .with("Duration", self.duration.to_string())
            .with("BillableSeconds", self.billsec.to_string())
            .with("Disposition", self.disposition.as_str())
            .with("AMAFlags", self.amaflags.as_str())
            .with("UniqueID", &self.uniqueid)
            .with("UserField", &self.userfield)
    }
}

/// The live record of a channel, until it is finished.
#[derive(Clone, Debug)]
pub struct Cdr {
    pub(crate) record: CdrRecord,
    /// Set by Dial (from `DIALSTATUS`) or `CDR(disposition)`-like changes; else from the cause.
    pub(crate) disposition: Option<Disposition>,
    /// `NoCDR`, `CDR_PROP(disable)=1`: the record is not logged.
    pub disabled: bool,
    /// Ended (Asterisk's finalized state): its end, durations and disposition are fixed.
    finished: bool,
}

impl Cdr {
    pub(crate) fn new(channel: &str, uniqueid: &str, linkedid: &str, sequence: u32) -> Cdr {
        let now = SystemTime::now();
        Cdr {
            record: CdrRecord {
                accountcode: String::new(),
                src: String::new(),
                dst: String::new(),
                dcontext: String::new(),
                clid: String::new(),
                channel: channel.to_owned(),
                dstchannel: String::new(),
                lastapp: String::new(),
                lastdata: String::new(),
                start: now,
                answer: None,
                end: now,
                duration: 0,
                billsec: 0,
                disposition: Disposition::NoAnswer,
                amaflags: AmaFlags::default(),
                uniqueid: uniqueid.to_owned(),
                linkedid: linkedid.to_owned(),
                userfield: String::new(),
                sequence,
                variables: Vec::new(),
            },
            disposition: None,
            disabled: false,
            finished: false,
        }
    }

    /// The next record of the chain, as Asterisk's `cdr_object_create_and_append`: Party A's
    /// side (caller ID, account, where it is in the dialplan, last application, userfield,
    /// variables, `disabled`) copied, starting now, no Party B, no answer yet.
    pub(crate) fn append(&self, sequence: u32) -> Cdr {
        let mut next = self.clone();
        let record = &mut next.record;
        record.sequence = sequence;
        record.start = SystemTime::now();
        record.end = record.start;
        record.answer = None;
        record.dstchannel.clear();
        next.disposition = None;
        next.finished = false;
        next
    }

    /// The record as it stands (what `CDR()` reads): durations up to now, or up to its end
    /// once finished.
    pub fn record(&self) -> CdrRecord {
        let mut record = self.record.clone();
        if !self.finished {
            close(&mut record, self.disposition, SystemTime::now(), None, false);
        }
        record
    }
    /// Whether the record has ended (its dial failed, or a later record took over).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
    /// The party dialled or bridged (`dstchannel`; empty when none).
    pub fn party_b(&self) -> &str {
        &self.record.dstchannel
    }
    pub fn record_mut(&mut self) -> &mut CdrRecord {
        &mut self.record
    }
    /// A variable set with `CDR(name)=value`.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.record.variables.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Sets (an empty value removes) a CDR variable.
    pub fn set_variable(&mut self, name: &str, value: &str) {
        self.record.variables.retain(|(k, _)| k != name);
        if !value.is_empty() {
            self.record.variables.push((name.to_owned(), value.to_owned()));
        }
    }
    /// `ResetCDR`: the record starts again now (answered now, if the channel is up), its
    /// disposition forgotten, its variables too unless `keep_variables`.
    pub fn reset(&mut self, up: bool, keep_variables: bool) {
        let now = SystemTime::now();
        self.record.start = now;
        self.record.answer = up.then_some(now);
        self.disposition = None;
        if !keep_variables {
            self.record.variables.clear();
        }
    }
    /// Whether a second party was dialled or bridged (`dstchannel`).
    pub fn has_party_b(&self) -> bool {
        !self.record.dstchannel.is_empty()
    }
    /// Records the party dialled or bridged.
    pub fn set_party_b(&mut self, channel: &str) {
        channel.clone_into(&mut self.record.dstchannel);
    }
    /// Sets the disposition (Dial does, from its outcome).
    pub fn set_disposition(&mut self, disposition: Disposition) {
        self.disposition = Some(disposition);
    }
    /// Marks the answer, once.
    pub(crate) fn answered(&mut self) {
        self.record.answer.get_or_insert_with(SystemTime::now);
    }

    /// Ends the record now (once: a finished record stays as it ended), its disposition the
    /// one set, else from the answer or `cause`.
    pub(crate) fn finish_now(&mut self, cause: Option<Cause>, congestion: bool) {
        if !self.finished {
            close(&mut self.record, self.disposition, SystemTime::now(), cause, congestion);
            self.finished = true;
        }
    }

    /// The finished record (ended now, with the channel's hangup cause, unless it had ended).
    pub(crate) fn finish(mut self, cause: Option<Cause>, settings: &CdrSettings) -> CdrRecord {
        self.finish_now(cause, settings.congestion);
        self.record
    }
}

/// Ends `record` at `end`: durations, and the disposition (the one set, else ANSWERED when
/// answered, else from the hangup cause).
fn close(record: &mut CdrRecord, set: Option<Disposition>, end: SystemTime, cause: Option<Cause>, congestion: bool) {
    record.end = end;
    let secs = |from: SystemTime| end.duration_since(from).map_or(0, |d| d.as_secs());
    record.billsec = record.answer.map_or(0, secs);
    record.duration = secs(record.start);
    record.disposition = match (set, record.answer) {
        (Some(d), _) => d,
        (None, Some(_)) => Disposition::Answered,
        (None, None) => cause.and_then(|c| Disposition::from_cause(c, congestion)).unwrap_or(Disposition::NoAnswer),
    };
}

/// `cdr.conf`'s `[general]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrSettings {
    pub enable: bool,
    pub unanswered: bool,
    pub congestion: bool,
    /// Default `yes`, as Asterisk 12 and later.
    pub endbeforehexten: bool,
}

impl Default for CdrSettings {
    fn default() -> Self {
        CdrSettings { enable: true, unanswered: false, congestion: false, endbeforehexten: true }
    }
}

impl CdrSettings {
    /// Reads `[general]` of a parsed `cdr.conf` (other sections belong to the backends).
    /// Keys Asterisk knows but Starling does not act on (batch mode: every backend here
    /// already writes in batches off the call path) are accepted silently.
    pub fn from_config(config: &Config) -> Result<CdrSettings, ConfigErrors> {
        let mut settings = CdrSettings::default();
        if let Some(general) = config.section("general") {
            let CdrSettings { enable, unanswered, congestion, endbeforehexten } = &mut settings;
            general.read_flags(
                &mut [
                    ("enable", enable),
                    ("unanswered", unanswered),
                    ("congestion", congestion),
                    ("endbeforehexten", endbeforehexten),
                ],
                &[
                    "batch",
                    "size",
                    "time",
                    "scheduleronly",
                    "safeshutdown",
                    "initiatedseconds",
                    "debug",
                    "channeldefaultenabled",
                    "ignorestatechanges",
                    "ignoredialchanges",
                ],
            )?;
        }
        Ok(settings)
    }
}

/// A CDR back end (cdr_csv, cdr_sqlite3...).
pub trait CdrBackend: Send + Sync {
    /// Queues one record; must return at once (the backend writes on its own thread).
    fn log(&self, record: &Arc<CdrRecord>);
    /// A few words for `cdr show status` after the backend's name (a remote database's state).
    fn status(&self) -> Option<String> {
        None
    }
}

/// The CDR engine: settings, backends, counters (`cdr show status`).
#[derive(Default)]
pub struct CdrEngine {
    settings: RwLock<CdrSettings>,
    backends: Registry<Arc<dyn CdrBackend>>,
    posted: AtomicU64,
}

impl CdrEngine {
    pub fn settings(&self) -> CdrSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Reads `cdr.conf` from `etcdir` (a missing file means the defaults); on an error the
    /// settings in force stay.
    pub fn load(&self, etcdir: &std::path::Path) -> Result<(), ConfigErrors> {
        let path = etcdir.join("cdr.conf");
        let settings =
            if path.exists() { CdrSettings::from_config(&Config::load(&path)?)? } else { Default::default() };
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        Ok(())
    }
    /// The status line of a registered backend ([`CdrBackend::status`]).
    pub fn backend_status(&self, name: &str) -> Option<String> {
        self.backends.get(name)?.status()
    }
    /// Registers a backend under its Asterisk name (`csv`, `sqlite3_custom`...).
    pub fn register_backend(
        &self,
        name: &str,
        backend: Arc<dyn CdrBackend>,
    ) -> Result<Registration<Arc<dyn CdrBackend>>, ConfigError> {
        self.backends.register(name, backend).map_err(|e| ConfigError::new(None, format!("CDR backend {e}")))
    }
    /// The registered backends' names, sorted.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.names()
    }
    /// Records handed to the backends since start.
    pub fn posted(&self) -> u64 {
        self.posted.load(Ordering::Relaxed)
    }

    /// Finishes a channel's record and hands it on, unless filtered out.
    pub(crate) fn post(&self, cdr: Cdr, cause: Option<Cause>, events: &crate::events::Events) {
        let settings = self.settings();
        if !settings.enable || cdr.disabled {
            return;
        }
        let record = cdr.finish(cause, &settings);
        // "Unanswered calls which only have an A party" are logged only with unanswered=yes.
        if record.answer.is_none() && record.dstchannel.is_empty() && !settings.unanswered {
            return;
        }
        self.posted.fetch_add(1, Ordering::Relaxed);
        if events.has_listeners() {
            events.publish(record.event());
        }
        let record = Arc::new(record);
        for backend in self.backends.all() {
            backend.log(&record);
        }
    }
}

/// Where a batching backend writes (a file, a database).
pub trait CdrWriter: Send + 'static {
    /// Writes every record of the batch, or none (the batch is retried).
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), String>;
    /// Called on the writer thread after a second without records (a spooling writer drains
    /// its spool then).
    fn idle(&mut self) {}
}

/// A backend that queues records and writes them on a thread of its own, as many at once as
/// have queued up (one transaction, one file append), so a call never waits for a disk.
/// A failed write is retried every second; [`BatchBackend::stop`] writes what is queued
/// before returning (no record is lost on a graceful stop). After each second without records
/// the thread calls [`CdrWriter::idle`].
pub struct BatchBackend {
    queue: std::sync::Mutex<Option<std::sync::mpsc::Sender<Arc<CdrRecord>>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Records in the queue, not yet taken by the thread.
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// At most this many records go in one write.
const BATCH: usize = 1000;

impl BatchBackend {
    pub fn spawn(name: &'static str, mut writer: impl CdrWriter) -> Arc<BatchBackend> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<CdrRecord>>();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = stopping.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = queued.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cdr-{name}"))
            .spawn(move || {
                crate::panic::critical(&format!("The CDR writer cdr_{name}"), move || loop {
                    let first = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                        Ok(first) => first,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            writer.idle();
                            continue;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(BATCH - 1));
                    taken.fetch_sub(batch.len(), Ordering::Relaxed);
                    let mut failures = 0u32;
                    while let Err(e) = writer.write(&batch) {
                        failures += 1;
                        if failures == 1 {
                            crate::tracing::error!("cdr_{name}: cannot write {} record(s): {e}; retrying", batch.len());
                        }
                        // Stopping (the queue closed) gives up after a few more tries.
                        if failures > 5 && stop.load(Ordering::Relaxed) {
                            crate::tracing::error!("cdr_{name}: {} record(s) lost: {e}", batch.len());
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                })
            })
            .expect("spawn a CDR writer thread");
        Arc::new(BatchBackend {
            queue: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
            stopping,
            queued,
        })
    }

    /// Records queued and not yet taken by the writer thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits until everything in it is written.
    pub fn stop(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl CdrBackend for BatchBackend {
    fn log(&self, record: &Arc<CdrRecord>) {
        if let Some(queue) = &*self.queue.lock().unwrap_or_else(|p| p.into_inner()) {
            // Counted before it is sent, so that the thread never takes more than was counted.
            self.queued.fetch_add(1, Ordering::Relaxed);
            if queue.send(record.clone()).is_err() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A loaded CDR backend module: its registration and its writer thread. Unloading it (or
/// stopping the process) unregisters it, then writes what is still queued.
pub struct CdrBackendModule {
    registration: Option<Registration<Arc<dyn CdrBackend>>>,
    backend: Arc<BatchBackend>,
}

impl CdrBackendModule {
    /// Starts `writer` on its thread and registers it as `name` (`csv`, `sqlite3`...).
    pub fn start(
        core: &crate::Core,
        name: &'static str,
        writer: impl CdrWriter,
    ) -> Result<CdrBackendModule, crate::LoadError> {
        let backend = BatchBackend::spawn(name, writer);
        let registration = core.cdr().register_backend(name, backend.clone()).map_err(|e| {
            backend.stop();
            crate::LoadError::Config(e.into())
        })?;
        Ok(CdrBackendModule { registration: Some(registration), backend })
    }

    /// Starts a backend writing to a database that may be away (cdr_pgsql), behind the spool
    /// `dbdir/cdr-spool.sqlite3` (see [`SpoolingWriter`]), and registers it as `name`. A spool
    /// that cannot be opened is a resource error (exit code 2 at startup).
    pub fn start_spooling(
        core: &crate::Core,
        name: &'static str,
        remote: impl RemoteWriter,
    ) -> Result<CdrBackendModule, crate::LoadError> {
        let path = core.settings().dbdir.join(SPOOL_FILE);
        let spooling = spool::SpoolingBackend::spawn(name, remote, &path).map_err(crate::LoadError::Resource)?;
        let backend = spooling.batch().clone();
        let registration = core.cdr().register_backend(name, Arc::new(spooling)).map_err(|e| {
            backend.stop();
            crate::LoadError::Config(e.into())
        })?;
        Ok(CdrBackendModule { registration: Some(registration), backend })
    }
}

impl crate::Module for CdrBackendModule {}

impl Drop for CdrBackendModule {
    fn drop(&mut self) {
        self.registration.take();
        self.backend.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_follow_asterisk() {
        let settings = CdrSettings::default();
        let finish = |answer: bool, disposition: Option<Disposition>, cause: Cause, settings: &CdrSettings| {
            let mut cdr = Cdr::new("SIP/alice-00000001", "1.1", "1.1", 0);
            if answer {
                cdr.answered();
            }
            cdr.disposition = disposition;
            cdr.finish(Some(cause), settings).disposition
        };
        assert_eq!(finish(true, None, Cause::NORMAL_CLEARING, &settings), Disposition::Answered);
        assert_eq!(finish(false, None, Cause::USER_BUSY, &settings), Disposition::Busy);
        assert_eq!(finish(false, None, Cause::CONGESTION, &settings), Disposition::Failed);
        let congestion = CdrSettings { congestion: true, ..Default::default() };
        assert_eq!(finish(false, None, Cause::CONGESTION, &congestion), Disposition::Congestion);
        assert_eq!(finish(false, None, Cause::NO_ANSWER, &settings), Disposition::NoAnswer);
        assert_eq!(finish(false, None, Cause::INTERWORKING, &settings), Disposition::NoAnswer);
        assert_eq!(finish(false, Some(Disposition::Busy), Cause::NORMAL_CLEARING, &settings), Disposition::Busy);
        assert_eq!(Disposition::from_dialstatus("CHANUNAVAIL", false), Disposition::Failed);
        assert_eq!(Disposition::from_dialstatus("CANCEL", false), Disposition::NoAnswer);
    }

    #[test]
    fn settings_come_from_general_with_file_and_line_errors() {
        let config = Config::parse_str("cdr.conf", "[general]\nunanswered=yes\ncongestion=maybe\n").unwrap();
        let err = CdrSettings::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("cdr.conf:3"), "{err}");
        let config = Config::parse_str("cdr.conf", "[general]\nenable=no\nbatch=yes\n[csv]\nusegmtime=yes\n").unwrap();
        let settings = CdrSettings::from_config(&config).unwrap();
        assert!(!settings.enable && !settings.unanswered);
    }

    #[test]
    fn unanswered_single_party_records_are_dropped_by_default() {
        struct Collect(std::sync::Mutex<Vec<Arc<CdrRecord>>>);
        impl CdrBackend for Collect {
            fn log(&self, record: &Arc<CdrRecord>) {
                self.0.lock().unwrap().push(record.clone());
            }
        }
        let engine = CdrEngine::default();
        let events = crate::events::Events::default();
        let collect = Arc::new(Collect(Default::default()));
        let _reg = engine.register_backend("test", collect.clone()).unwrap();
        engine.post(Cdr::new("SIP/a-1", "1", "1", 0), Some(Cause::NORMAL_CLEARING), &events);
        let mut dialed = Cdr::new("SIP/a-2", "2", "2", 0);
        dialed.record.dstchannel = "SIP/b-3".into();
        dialed.set_disposition(Disposition::Busy);
        engine.post(dialed, Some(Cause::USER_BUSY), &events);
        let mut disabled = Cdr::new("SIP/a-4", "4", "4", 0);
        disabled.answered();
        disabled.disabled = true;
        engine.post(disabled, None, &events);
        let logged = collect.0.lock().unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!((logged[0].channel.as_str(), logged[0].disposition), ("SIP/a-2", Disposition::Busy));
        assert_eq!(engine.posted(), 1);
    }
}
