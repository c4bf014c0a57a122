//! The spool of the remote CDR backends (cdr_pgsql): what a remote database cannot take now
//! waits in SQLite (in the core, which links SQLite) until it is back.
//!
//! [`Spool`] is one table, `cdr_spool`, in `dbdir/cdr-spool.sqlite3` (WAL, `synchronous=FULL`:
//! a record in the spool survives a crash and a power cut), rows keyed by backend name so that
//! several backends can share the file. It is a file of its own rather than a table in the
//! astdb: the astdb's one connection is shared (behind a lock) by registrations and `DB()` on the
//! call path, which a spool filling up during an outage must not slow down, and only the spool
//! needs a sync on every commit. [`SpoolingWriter`] wraps a [`RemoteWriter`] (the
//! database client) into the [`CdrWriter`] a [`BatchBackend`] drives:
//!
//! - while the spool is empty and the remote takes writes, a batch goes straight to it;
//! - a batch the remote cannot take (down, unreachable, timed out) goes to the spool, and for
//!   a second no new attempt is made (new batches go to the spool at SQLite's pace);
//! - whenever the spool is not empty, new batches join it at its end, and the spool is
//!   drained oldest first, a batch at a time, as long as the remote takes them; the writer
//!   thread also drains (or probes the remote) once a second when no record comes, so a spool
//!   left by an earlier run is written as soon as the database is reachable;
//! - a record the remote *refuses* (its data breaks a constraint) is held in the spool, logged,
//!   and tried again at the next start; the records behind it flow on.
//!
//! The in-memory queue in front of the writer thread is bounded ([`QUEUE_LIMIT`]): past it, the
//! thread that ends a call writes its record into the spool itself (slower for that call, but
//! nothing is lost and memory stays bounded).
//!
//! A record is removed from the spool after the remote has committed it: a crash between the
//! two writes the record again at the next start (at least once, never lost).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::{AmaFlags, BatchBackend, CdrBackend, CdrRecord, CdrWriter, Disposition, BATCH};

/// The spool file, in `dbdir`.
pub const SPOOL_FILE: &str = "cdr-spool.sqlite3";

/// Records queued in memory for the writer thread before calls write to the spool themselves.
pub const QUEUE_LIMIT: usize = 10 * BATCH;

/// How long after a failed attempt the remote is left alone.
const RETRY: Duration = Duration::from_secs(1);

/// The record's columns in the spool, in the order [`Spool::push`] binds them.
const COLUMNS: &str = "accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start_ns, \
                       answer_ns, end_ns, duration, billsec, disposition, amaflags, uniqueid, linkedid, userfield, \
                       sequence, variables";

/// Records waiting for a remote backend, in an SQLite table.
pub struct Spool {
    connection: Connection,
    backend: String,
    path: PathBuf,
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

impl Spool {
    /// Opens (creating) the spool file and table for `backend`. Records held back at an earlier
    /// run are released: they are tried again.
    pub fn open(path: &Path, backend: &str) -> Result<Spool, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let connection = Connection::open(path).map_err(sql_error(path))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
                 CREATE TABLE IF NOT EXISTS cdr_spool (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    backend TEXT NOT NULL, held INTEGER NOT NULL DEFAULT 0,
                    accountcode TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, dcontext TEXT NOT NULL,
                    clid TEXT NOT NULL, channel TEXT NOT NULL, dstchannel TEXT NOT NULL, lastapp TEXT NOT NULL,
                    lastdata TEXT NOT NULL, start_ns INTEGER NOT NULL, answer_ns INTEGER, end_ns INTEGER NOT NULL,
                    duration INTEGER NOT NULL, billsec INTEGER NOT NULL, disposition TEXT NOT NULL,
                    amaflags TEXT NOT NULL, uniqueid TEXT NOT NULL, linkedid TEXT NOT NULL,
                    userfield TEXT NOT NULL, sequence INTEGER NOT NULL, variables TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS cdr_spool_order ON cdr_spool (backend, held, id);",
            )
            .map_err(sql_error(path))?;
        connection
            .execute("UPDATE cdr_spool SET held = 0 WHERE backend = ?1 AND held <> 0", [backend])
            .map_err(sql_error(path))?;
        Ok(Spool { connection, backend: backend.to_owned(), path: path.to_owned() })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records, in one transaction.
    pub fn push(&mut self, records: &[Arc<CdrRecord>]) -> Result<(), String> {
        let path = self.path.clone();
        let tx = self.connection.transaction().map_err(sql_error(&path))?;
        {
            let placeholders = (1..=22).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", ");
            let mut insert = tx
                .prepare_cached(&format!("INSERT INTO cdr_spool (backend, {COLUMNS}) VALUES ({placeholders})"))
                .map_err(sql_error(&path))?;
            for r in records {
                insert
                    .execute(params![
                        self.backend,
                        r.accountcode,
                        r.src,
                        r.dst,
                        r.dcontext,
                        r.clid,
                        r.channel,
                        r.dstchannel,
                        r.lastapp,
                        r.lastdata,
                        nanos(r.start),
                        r.answer.map(nanos),
                        nanos(r.end),
                        r.duration,
                        r.billsec,
                        r.disposition.as_str(),
                        r.amaflags.as_str(),
                        r.uniqueid,
                        r.linkedid,
                        r.userfield,
                        r.sequence,
                        encode_variables(&r.variables),
                    ])
                    .map_err(sql_error(&path))?;
            }
        }
        tx.commit().map_err(sql_error(&path))
    }

    /// The `n` oldest records that are not held, with their ids.
    pub fn oldest(&self, n: usize) -> Result<Vec<(i64, CdrRecord)>, String> {
        let mut query = self
            .connection
            .prepare_cached(&format!(
                "SELECT id, {COLUMNS} FROM cdr_spool WHERE backend = ?1 AND held = 0 ORDER BY id LIMIT ?2"
            ))
            .map_err(sql_error(&self.path))?;
        let rows = query
            .query_map(params![self.backend, n as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    CdrRecord {
                        accountcode: row.get(1)?,
                        src: row.get(2)?,
                        dst: row.get(3)?,
                        dcontext: row.get(4)?,
                        clid: row.get(5)?,
                        channel: row.get(6)?,
                        dstchannel: row.get(7)?,
                        lastapp: row.get(8)?,
                        lastdata: row.get(9)?,
                        start: time(row.get(10)?),
                        answer: row.get::<_, Option<i64>>(11)?.map(time),
                        end: time(row.get(12)?),
                        duration: row.get(13)?,
                        billsec: row.get(14)?,
                        disposition: Disposition::parse(&row.get::<_, String>(15)?).unwrap_or(Disposition::NoAnswer),
                        amaflags: AmaFlags::parse(&row.get::<_, String>(16)?).unwrap_or_default(),
                        uniqueid: row.get(17)?,
                        linkedid: row.get(18)?,
                        userfield: row.get(19)?,
                        sequence: row.get(20)?,
                        variables: decode_variables(&row.get::<_, String>(21)?),
                    },
                ))
            })
            .map_err(sql_error(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_error(&self.path))
    }

    /// Deletes records (written to the remote), in one transaction.
    pub fn remove(&mut self, ids: &[i64]) -> Result<(), String> {
        self.each(ids, "DELETE FROM cdr_spool WHERE id = ?1")
    }

    /// Holds records back (the remote refused them): [`Spool::oldest`] skips them until the
    /// spool is opened again.
    pub fn hold(&mut self, ids: &[i64]) -> Result<(), String> {
        self.each(ids, "UPDATE cdr_spool SET held = 1 WHERE id = ?1")
    }

    fn each(&mut self, ids: &[i64], sql: &str) -> Result<(), String> {
        let path = self.path.clone();
        let tx = self.connection.transaction().map_err(sql_error(&path))?;
        {
            let mut statement = tx.prepare_cached(sql).map_err(sql_error(&path))?;
            for id in ids {
                statement.execute([id]).map_err(sql_error(&path))?;
            }
        }
        tx.commit().map_err(sql_error(&path))
    }

    /// Records waiting (not held).
    pub fn len(&self) -> Result<u64, String> {
        self.count(false)
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> Result<bool, String> {
        Ok(self.len()? == 0)
    }

    /// Records held back.
    pub fn held(&self) -> Result<u64, String> {
        self.count(true)
    }

    fn count(&self, held: bool) -> Result<u64, String> {
        self.connection
            .query_row(
                "SELECT COUNT(*) FROM cdr_spool WHERE backend = ?1 AND (held <> 0) = ?2",
                params![self.backend, held],
                |r| r.get(0),
            )
            .map_err(sql_error(&self.path))
    }
}

fn nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn time(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// `name\tvalue` lines, with `\`, tab and newline escaped.
fn encode_variables(variables: &[(String, String)]) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    variables.iter().map(|(k, v)| format!("{}\t{}", escape(k), escape(v))).collect::<Vec<_>>().join("\n")
}

fn decode_variables(text: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    };
    text.split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (k, v) = line.split_once('\t').unwrap_or((line, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

/// Why a remote write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The remote cannot take records now (down, unreachable, timed out): try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The remote answered and refused the data itself (a constraint, a value it cannot take):
    /// the same record would be refused again.
    #[error("{0}")]
    Rejected(String),
}

/// A database that may be away (cdr_pgsql's PostgreSQL client).
pub trait RemoteWriter: Send + 'static {
    /// Writes every record of the batch, or none.
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), RemoteError>;
    /// Makes sure the remote is reachable (connects if needed); called once a second while it
    /// is not known to be, so that it comes back without waiting for a call.
    fn connect(&mut self) -> Result<(), RemoteError> {
        Ok(())
    }
    /// What `cdr show status` says of the link after the spool's state (cdr_pgsql: its
    /// `sslmode` and whether the connection is encrypted). Asked once, before the writer moves
    /// to its thread: the function is called from the CLI's, so it reads shared state.
    fn status(&self) -> Option<RemoteStatus> {
        None
    }
}

/// See [`RemoteWriter::status`].
pub type RemoteStatus = Arc<dyn Fn() -> String + Send + Sync>;

const UNKNOWN: u8 = 0;
const ONLINE: u8 = 1;
const OFFLINE: u8 = 2;

/// What the writer thread and the backend share.
struct Shared {
    name: &'static str,
    spool: Mutex<Spool>,
    path: PathBuf,
    state: AtomicU8,
    /// Mirrors of the spool's counts, for `cdr show status`.
    waiting: AtomicU64,
    held: AtomicU64,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the spool's counts.
    fn refresh(&self, spool: &Spool) {
        if let (Ok(waiting), Ok(held)) = (spool.len(), spool.held()) {
            self.waiting.store(waiting, Ordering::Relaxed);
            self.held.store(held, Ordering::Relaxed);
        }
    }

    /// Appends records to the spool.
    fn push(&self, records: &[Arc<CdrRecord>]) -> Result<(), String> {
        let mut spool = self.spool();
        spool.push(records)?;
        self.waiting.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A [`RemoteWriter`] behind a spool: see the module's documentation.
pub struct SpoolingWriter<W: RemoteWriter> {
    remote: W,
    shared: Arc<Shared>,
    /// No attempt on the remote before this (after a failure).
    retry_at: Option<Instant>,
}

impl<W: RemoteWriter> SpoolingWriter<W> {
    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn offline(&mut self, error: &str) {
        self.retry_at = Some(Instant::now() + RETRY);
        if self.shared.state.swap(OFFLINE, Ordering::Relaxed) != OFFLINE {
            crate::tracing::error!(
                "cdr_{}: {error}; records are spooled to {} until the database is back",
                self.shared.name,
                self.shared.path.display()
            );
        }
    }

    fn online(&mut self) {
        self.retry_at = None;
        if self.shared.state.swap(ONLINE, Ordering::Relaxed) == OFFLINE {
            crate::tracing::info!("cdr_{}: the database is reachable again", self.shared.name);
        }
    }

    /// Writes the spool to the remote, oldest first, while it takes records. Problems with the
    /// spool itself are logged (the records stay where they are).
    fn drain(&mut self) {
        let name = self.shared.name;
        let (mut written, mut refused) = (0usize, 0usize);
        while self.may_try() {
            let rows = match self.shared.spool().oldest(BATCH) {
                Ok(rows) => rows,
                Err(e) => {
                    crate::tracing::error!("cdr_{name}: cannot read the spool: {e}");
                    self.retry_at = Some(Instant::now() + RETRY);
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            let (ids, records): (Vec<i64>, Vec<Arc<CdrRecord>>) =
                rows.into_iter().map(|(id, record)| (id, Arc::new(record))).unzip();
            match self.remote.write(&records) {
                Ok(()) => {
                    self.online();
                    self.settle(&ids, false);
                    written += ids.len();
                }
                Err(RemoteError::Unavailable(e)) => self.offline(&e),
                Err(RemoteError::Rejected(e)) => {
                    self.online();
                    // Find the record(s) at fault: one at a time.
                    for (id, record) in ids.iter().zip(&records) {
                        match self.remote.write(std::slice::from_ref(record)) {
                            Ok(()) => {
                                self.settle(&[*id], false);
                                written += 1;
                            }
                            Err(RemoteError::Rejected(e)) => {
                                if refused == 0 {
                                    crate::tracing::error!(
                                        "cdr_{name}: the database refuses the record of {} ({e}); it is kept in {} \
                                         and tried again at the next start",
                                        record.uniqueid,
                                        self.shared.path.display()
                                    );
                                }
                                refused += 1;
                                self.settle(&[*id], true);
                            }
                            Err(RemoteError::Unavailable(e)) => {
                                self.offline(&e);
                                break;
                            }
                        }
                    }
                    if refused == 0 {
                        crate::tracing::warn!("cdr_{name}: a batch was refused ({e}), then taken record by record");
                    }
                }
            }
        }
        if refused > 1 {
            crate::tracing::error!("cdr_{name}: {refused} records refused by the database are kept in the spool");
        }
        if written > 0 {
            crate::tracing::info!("cdr_{name}: {written} spooled record(s) written to the database");
        }
    }

    /// Removes (or holds) records the remote has dealt with.
    fn settle(&self, ids: &[i64], hold: bool) {
        let mut spool = self.shared.spool();
        let result = if hold { spool.hold(ids) } else { spool.remove(ids) };
        if let Err(e) = result {
            crate::tracing::error!("cdr_{}: cannot update the spool: {e}", self.shared.name);
        }
        self.shared.refresh(&spool);
    }
}

impl<W: RemoteWriter> CdrWriter for SpoolingWriter<W> {
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), String> {
        if self.shared.waiting.load(Ordering::Relaxed) > 0 || !self.may_try() {
            // Behind the spool: oldest first.
            self.shared.push(batch)?;
            self.drain();
            return Ok(());
        }
        match self.remote.write(batch) {
            Ok(()) => {
                self.online();
                Ok(())
            }
            Err(RemoteError::Unavailable(e)) => {
                self.offline(&e);
                self.shared.push(batch)
            }
            Err(RemoteError::Rejected(_)) => {
                self.online();
                self.shared.push(batch)?;
                self.drain();
                Ok(())
            }
        }
    }

    fn idle(&mut self) {
        if !self.may_try() {
            return;
        }
        if self.shared.waiting.load(Ordering::Relaxed) > 0 {
            self.drain();
        } else if self.shared.state.load(Ordering::Relaxed) != ONLINE {
            match self.remote.connect() {
                Ok(()) => self.online(),
                Err(e) => self.offline(&e.to_string()),
            }
        }
    }
}

/// The registered side of a spooling backend: queues records for the writer thread, or past
/// [`QUEUE_LIMIT`] writes them into the spool itself.
pub(crate) struct SpoolingBackend {
    batch: Arc<BatchBackend>,
    shared: Arc<Shared>,
    remote: Option<RemoteStatus>,
}

impl SpoolingBackend {
    /// Opens the spool and starts the writer thread.
    pub(crate) fn spawn(
        name: &'static str,
        remote: impl RemoteWriter,
        spool_path: &Path,
    ) -> Result<SpoolingBackend, String> {
        let spool = Spool::open(spool_path, name)?;
        let shared = Arc::new(Shared {
            name,
            path: spool_path.to_owned(),
            state: AtomicU8::new(UNKNOWN),
            waiting: AtomicU64::new(0),
            held: AtomicU64::new(0),
            spool: Mutex::new(spool),
        });
        {
            let spool = shared.spool();
            shared.refresh(&spool);
            let waiting = shared.waiting.load(Ordering::Relaxed);
            if waiting > 0 {
                crate::tracing::info!(
                    "cdr_{name}: {waiting} record(s) in {} from an earlier run are written when the database is \
                     reachable",
                    spool_path.display()
                );
            }
        }
        let status = remote.status();
        let writer = SpoolingWriter { remote, shared: shared.clone(), retry_at: None };
        Ok(SpoolingBackend { batch: BatchBackend::spawn(name, writer), shared, remote: status })
    }

    pub(crate) fn batch(&self) -> &Arc<BatchBackend> {
        &self.batch
    }
}

impl CdrBackend for SpoolingBackend {
    fn log(&self, record: &Arc<CdrRecord>) {
        if self.batch.queued() < QUEUE_LIMIT {
            self.batch.log(record);
            return;
        }
        if let Err(e) = self.shared.push(std::slice::from_ref(record)) {
            crate::tracing::error!("cdr_{}: the record of {} is lost: {e}", self.shared.name, record.uniqueid);
        }
    }

    fn status(&self) -> Option<String> {
        let state = match self.shared.state.load(Ordering::Relaxed) {
            ONLINE => "online",
            OFFLINE => "offline",
            _ => "connecting",
        };
        let mut status = format!("{state}, {} spooled", self.shared.waiting.load(Ordering::Relaxed));
        let held = self.shared.held.load(Ordering::Relaxed);
        if held > 0 {
            status.push_str(&format!(", {held} refused"));
        }
        if let Some(remote) = &self.remote {
            status.push_str(", ");
            status.push_str(&remote());
        }
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn record(n: u32) -> Arc<CdrRecord> {
        let start = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        Arc::new(CdrRecord {
            accountcode: "acct".into(),
            src: "1001".into(),
            dst: "600".into(),
            dcontext: "default".into(),
            clid: "\"Alice\" <1001>".into(),
            channel: format!("SIP/alice-{n:08x}"),
            dstchannel: String::new(),
            lastapp: "Dial".into(),
            lastdata: "SIP/bob,30\ttab".into(),
            start,
            answer: n.is_multiple_of(2).then_some(start + Duration::from_millis(1500)),
            end: start + Duration::from_secs(5),
            duration: 5,
            billsec: if n.is_multiple_of(2) { 3 } else { 0 },
            disposition: if n.is_multiple_of(2) { Disposition::Answered } else { Disposition::Busy },
            amaflags: AmaFlags::Billing,
            uniqueid: format!("1700000000.{n}"),
            linkedid: "1700000000.0".into(),
            userfield: "vip".into(),
            sequence: n,
            variables: vec![("a\\b".into(), "x\ny\tz\\".into()), ("plain".into(), String::new())],
        })
    }

    fn temp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(name).tempdir().unwrap()
    }

    #[test]
    fn records_round_trip_oldest_first_per_backend_and_survive_a_reopen() {
        let dir = temp("cdr-spool");
        let path = dir.path().join("db").join(SPOOL_FILE);
        let mut spool = Spool::open(&path, "pgsql").unwrap();
        let mut other = Spool::open(&path, "other").unwrap();
        assert!(spool.is_empty().unwrap());
        let records: Vec<_> = (0..5).map(record).collect();
        spool.push(&records[..3]).unwrap();
        other.push(&records[4..]).unwrap();
        spool.push(&records[3..4]).unwrap();
        assert_eq!((spool.len().unwrap(), other.len().unwrap()), (4, 1));
        let oldest = spool.oldest(2).unwrap();
        assert_eq!(
            oldest.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![(*records[0]).clone(), (*records[1]).clone()]
        );
        spool.remove(&[oldest[0].0]).unwrap();
        spool.hold(&[oldest[1].0]).unwrap();
        assert_eq!((spool.len().unwrap(), spool.held().unwrap()), (2, 1));
        let rest: Vec<CdrRecord> = spool.oldest(10).unwrap().into_iter().map(|(_, r)| r).collect();
        assert_eq!(rest, vec![(*records[2]).clone(), (*records[3]).clone()]);
        drop(spool);
        // Reopened (a restart): the held record is tried again, in its place.
        let spool = Spool::open(&path, "pgsql").unwrap();
        assert_eq!((spool.len().unwrap(), spool.held().unwrap()), (3, 0));
        let again: Vec<String> = spool.oldest(10).unwrap().into_iter().map(|(_, r)| r.uniqueid).collect();
        assert_eq!(again, ["1700000000.1", "1700000000.2", "1700000000.3"]);
        assert_eq!(other.oldest(10).unwrap()[0].1, *records[4]);
    }

    /// A remote that answers from a script of outcomes, and remembers what it took.
    #[derive(Default)]
    struct Script {
        outcomes: VecDeque<Result<(), RemoteError>>,
        taken: Vec<String>,
        down: bool,
    }

    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<Script>>);

    impl Scripted {
        fn down(&self, down: bool) {
            self.0.lock().unwrap().down = down;
        }
        fn taken(&self) -> Vec<String> {
            self.0.lock().unwrap().taken.clone()
        }
    }

    impl RemoteWriter for Scripted {
        fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), RemoteError> {
            let mut state = self.0.lock().unwrap();
            if state.down {
                return Err(RemoteError::Unavailable("connection refused".into()));
            }
            // A record whose userfield says so is always refused.
            if batch.iter().any(|r| r.userfield == "poison") {
                return Err(RemoteError::Rejected("value too long".into()));
            }
            state.outcomes.pop_front().unwrap_or(Ok(()))?;
            state.taken.extend(batch.iter().map(|r| r.uniqueid.clone()));
            Ok(())
        }
        fn connect(&mut self) -> Result<(), RemoteError> {
            if self.0.lock().unwrap().down {
                Err(RemoteError::Unavailable("connection refused".into()))
            } else {
                Ok(())
            }
        }
    }

    fn spooling(remote: Scripted, path: &Path) -> (SpoolingWriter<Scripted>, Arc<Shared>) {
        let shared = Arc::new(Shared {
            name: "test",
            spool: Mutex::new(Spool::open(path, "test").unwrap()),
            path: path.to_owned(),
            state: AtomicU8::new(UNKNOWN),
            waiting: AtomicU64::new(0),
            held: AtomicU64::new(0),
        });
        (SpoolingWriter { remote, shared: shared.clone(), retry_at: None }, shared)
    }

    #[test]
    fn an_outage_spools_and_the_spool_drains_oldest_first_before_new_records() {
        let dir = temp("cdr-spooling");
        let path = dir.path().join(SPOOL_FILE);
        let remote = Scripted::default();
        let (mut writer, shared) = spooling(remote.clone(), &path);
        writer.write(&[record(0)]).unwrap();
        remote.down(true);
        writer.write(&[record(1), record(2)]).unwrap();
        writer.write(&[record(3)]).unwrap();
        assert_eq!(shared.waiting.load(Ordering::Relaxed), 3);
        assert_eq!(shared.state.load(Ordering::Relaxed), OFFLINE);
        // Within the retry pause nothing is attempted, even when the remote is back.
        remote.down(false);
        writer.idle();
        assert_eq!(remote.taken(), ["1700000000.0"]);
        writer.retry_at = Some(Instant::now());
        writer.write(&[record(4)]).unwrap();
        assert_eq!(remote.taken(), ["1700000000.0", "1700000000.1", "1700000000.2", "1700000000.3", "1700000000.4"]);
        assert_eq!(shared.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(shared.state.load(Ordering::Relaxed), ONLINE);
        assert!(shared.spool().is_empty().unwrap());
    }

    #[test]
    fn a_spool_left_by_a_restart_drains_when_idle_and_a_refused_record_is_held() {
        let dir = temp("cdr-restart");
        let path = dir.path().join(SPOOL_FILE);
        {
            let mut spool = Spool::open(&path, "test").unwrap();
            let mut poison = (*record(1)).clone();
            poison.userfield = "poison".into();
            spool.push(&[record(0), Arc::new(poison), record(2)]).unwrap();
        }
        let remote = Scripted::default();
        let (mut writer, shared) = spooling(remote.clone(), &path);
        shared.refresh(&shared.spool());
        writer.idle();
        assert_eq!(remote.taken(), ["1700000000.0", "1700000000.2"]);
        assert_eq!((shared.waiting.load(Ordering::Relaxed), shared.held.load(Ordering::Relaxed)), (0, 1));
        // New records flow on past the held one.
        writer.write(&[record(3)]).unwrap();
        assert_eq!(remote.taken().last().unwrap(), "1700000000.3");
        // A remote that fails mid-drain keeps what it did not take.
        let remote = Scripted::default();
        remote.0.lock().unwrap().outcomes.extend([Ok(()), Err(RemoteError::Unavailable("gone".into()))]);
        let dir2 = temp("cdr-middrain");
        let path2 = dir2.path().join(SPOOL_FILE);
        Spool::open(&path2, "test").unwrap().push(&(0..1500).map(record).collect::<Vec<_>>()).unwrap();
        let (mut writer, shared) = spooling(remote.clone(), &path2);
        shared.refresh(&shared.spool());
        writer.idle();
        assert_eq!(remote.taken().len(), BATCH);
        assert_eq!(shared.waiting.load(Ordering::Relaxed), 500);
        assert_eq!(shared.spool().oldest(1).unwrap()[0].1.uniqueid, format!("1700000000.{BATCH}"));
    }

    #[test]
    fn past_the_queue_limit_records_go_to_the_spool_on_the_callers_thread() {
        let dir = temp("cdr-overflow");
        let path = dir.path().join(SPOOL_FILE);
        // A remote that blocks until released keeps the writer thread busy.
        struct Blocked(Arc<(Mutex<bool>, std::sync::Condvar)>, Arc<Mutex<usize>>);
        impl RemoteWriter for Blocked {
            fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), RemoteError> {
                let (lock, cvar) = &*self.0;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = cvar.wait(open).unwrap();
                }
                *self.1.lock().unwrap() += batch.len();
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let taken = Arc::new(Mutex::new(0));
        let backend = SpoolingBackend::spawn("overflow", Blocked(gate.clone(), taken.clone()), &path).unwrap();
        let total = QUEUE_LIMIT + 2 * BATCH + 7;
        let one = record(0);
        for _ in 0..total {
            backend.log(&one);
        }
        let spooled = backend.shared.waiting.load(Ordering::Relaxed) as usize;
        assert!(spooled >= BATCH, "{spooled} spooled");
        assert!(backend.batch.queued() <= QUEUE_LIMIT);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        backend.batch().stop();
        // Stopped: what was queued is written; the spool waits for the next start.
        let spool = Spool::open(&path, "overflow").unwrap();
        assert_eq!(*taken.lock().unwrap() + spool.len().unwrap() as usize, total);
    }
}
