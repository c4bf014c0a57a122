//! The SQLite writer of cdr_sqlite3 (in the core, which links SQLite).

use std::sync::Arc;

use rusqlite::{params, Connection};

use super::{format_time, CdrRecord, CdrWriter};

/// The columns, in order (the record's fields).
const COLUMNS: &str = "accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, \
                       start, answer, end, duration, billsec, disposition, amaflags, uniqueid, userfield, \
                       linkedid, sequence";

/// Writes records into an SQLite table (cdr_sqlite3's writer), in WAL mode, a batch per
/// transaction.
pub struct SqliteWriter {
    connection: Connection,
    insert: String,
}

impl SqliteWriter {
    /// Opens (creating) the database and the table.
    pub fn open(path: &std::path::Path, table: &str) -> Result<SqliteWriter, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let connection = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
                 CREATE TABLE IF NOT EXISTS {table} (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    accountcode TEXT, src TEXT, dst TEXT, dcontext TEXT, clid TEXT, channel TEXT,
                    dstchannel TEXT, lastapp TEXT, lastdata TEXT, start TEXT, answer TEXT, end TEXT,
                    duration INTEGER, billsec INTEGER, disposition TEXT, amaflags TEXT, uniqueid TEXT,
                    userfield TEXT, linkedid TEXT, sequence INTEGER);"
            ))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let placeholders = vec!["?"; COLUMNS.split(',').count()].join(", ");
        Ok(SqliteWriter { connection, insert: format!("INSERT INTO {table} ({COLUMNS}) VALUES ({placeholders})") })
    }
}

impl CdrWriter for SqliteWriter {
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), String> {
        let tx = self.connection.transaction().map_err(|e| e.to_string())?;
        {
            let mut insert = tx.prepare_cached(&self.insert).map_err(|e| e.to_string())?;
            for r in batch {
                insert
                    .execute(params![
                        r.accountcode,
                        r.src,
                        r.dst,
                        r.dcontext,
                        r.clid,
                        r.channel,
                        r.dstchannel,
                        r.lastapp,
                        r.lastdata,
                        format_time(r.start, false),
                        r.answer.map(|t| format_time(t, false)),
                        format_time(r.end, false),
                        r.duration,
                        r.billsec,
                        r.disposition.as_str(),
                        r.amaflags.as_str(),
                        r.uniqueid,
                        r.userfield,
                        r.linkedid,
                        r.sequence,
                    ])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{AmaFlags, Disposition};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn batches_land_in_one_transaction_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("cdr-sqlite3-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("master.db");
        let mut writer = SqliteWriter::open(&path, "cdr").unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = |n: u32| {
            Arc::new(CdrRecord {
                accountcode: String::new(),
                src: "1001".into(),
                dst: "600".into(),
                dcontext: "default".into(),
                clid: "1001".into(),
                channel: format!("SIP/alice-{n:08x}"),
                dstchannel: String::new(),
                lastapp: "Echo".into(),
                lastdata: String::new(),
                start,
                answer: (n.is_multiple_of(2)).then_some(start),
                end: start + Duration::from_secs(5),
                duration: 5,
                billsec: if n.is_multiple_of(2) { 5 } else { 0 },
                disposition: if n.is_multiple_of(2) { Disposition::Answered } else { Disposition::NoAnswer },
                amaflags: AmaFlags::Documentation,
                uniqueid: format!("1700000000.{n}"),
                linkedid: format!("1700000000.{n}"),
                userfield: String::new(),
                sequence: 0,
                variables: Vec::new(),
            })
        };
        let batch: Vec<_> = (0..100).map(record).collect();
        writer.write(&batch).unwrap();
        drop(writer);
        let check = Connection::open(&path).unwrap();
        let mode: String = check.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let (count, answered): (i64, i64) =
            check.query_row("SELECT COUNT(*), COUNT(answer) FROM cdr", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((count, answered), (100, 50));
        let disposition: String =
            check.query_row("SELECT disposition FROM cdr WHERE uniqueid='1700000000.1'", [], |r| r.get(0)).unwrap();
        assert_eq!(disposition, "NO ANSWER");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
