//! The embedded database: Asterisk's astdb (family/key → value) in SQLite, in `dbdir`.
//!
//! State that must outlive a call or a restart — registrar bindings, `DB()` keys, outbound
//! registration status — goes through [`Storage`]; the SQLite back end is the default (a
//! PostgreSQL one can follow behind the same trait, ARCHITECTURE.md "Beyond one machine").
//! Keys are stored as Asterisk stores them, `/family/key`, so `database show` looks the same.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct DbError(String);

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

/// The storage every part of the PBX shares.
pub trait Storage: Send + Sync {
    fn put(&self, family: &str, key: &str, value: &str) -> Result<(), DbError>;
    fn get(&self, family: &str, key: &str) -> Result<Option<String>, DbError>;
    /// Deletes one key; whether it existed.
    fn del(&self, family: &str, key: &str) -> Result<bool, DbError>;
    /// Deletes a family (or a subtree of it); how many keys went.
    fn deltree(&self, family: &str, subtree: Option<&str>) -> Result<usize, DbError>;
    /// `(/family/key, value)` pairs under a prefix (`""` for all), sorted.
    fn show(&self, prefix: &str) -> Result<Vec<(String, String)>, DbError>;
}

/// SQLite, one file, one connection behind a lock (the operations are short).
pub struct SqliteStorage {
    conn: Mutex<Connection>,
}

fn full_key(family: &str, key: &str) -> String {
    format!("/{}/{}", family.trim_matches('/'), key.trim_start_matches('/'))
}

/// `LIKE` pattern for a prefix, with SQL's wildcards escaped.
fn like_prefix(prefix: &str) -> String {
    let escaped: String =
        prefix.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    format!("{escaped}%")
}

impl SqliteStorage {
    /// Opens (creating) `dir/astdb.sqlite3`.
    pub fn open(dir: &Path) -> Result<SqliteStorage, DbError> {
        let path = dir.join("astdb.sqlite3");
        let conn = Connection::open(&path).map_err(|e| DbError(format!("cannot open {}: {e}", path.display())))?;
        // WAL keeps readers and the writer apart and survives a kill -9 without losing commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute("CREATE TABLE IF NOT EXISTS astdb (key VARCHAR(256) PRIMARY KEY, value VARCHAR(256))", [])?;
        Ok(SqliteStorage { conn: Mutex::new(conn) })
    }

    /// A database in memory, for tests.
    pub fn in_memory() -> SqliteStorage {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        conn.execute("CREATE TABLE astdb (key VARCHAR(256) PRIMARY KEY, value VARCHAR(256))", [])
            .expect("create astdb");
        SqliteStorage { conn: Mutex::new(conn) }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for SqliteStorage {
    fn put(&self, family: &str, key: &str, value: &str) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO astdb (key, value) VALUES (?1, ?2)",
            params![full_key(family, key), value],
        )?;
        Ok(())
    }

    fn get(&self, family: &str, key: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM astdb WHERE key = ?1", params![full_key(family, key)], |r| r.get(0))
            .optional()?)
    }

    fn del(&self, family: &str, key: &str) -> Result<bool, DbError> {
        Ok(self.conn().execute("DELETE FROM astdb WHERE key = ?1", params![full_key(family, key)])? > 0)
    }

    fn deltree(&self, family: &str, subtree: Option<&str>) -> Result<usize, DbError> {
        let prefix = match subtree {
            Some(sub) => format!("{}/", full_key(family, sub)),
            None => format!("/{}/", family.trim_matches('/')),
        };
        Ok(self.conn().execute("DELETE FROM astdb WHERE key LIKE ?1 ESCAPE '\\'", params![like_prefix(&prefix)])?)
    }

    fn show(&self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let conn = self.conn();
        let mut statement = conn.prepare("SELECT key, value FROM astdb WHERE key LIKE ?1 ESCAPE '\\' ORDER BY key")?;
        let rows = statement.query_map(params![like_prefix(prefix)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keys_and_trees() {
        let db = SqliteStorage::in_memory();
        db.put("cidname", "5551212", "Alice").unwrap();
        db.put("blacklist", "666", "1").unwrap();
        db.put("blacklist", "sub/1", "a").unwrap();
        db.put("blacklist", "sub/2", "b").unwrap();
        assert_eq!(db.get("cidname", "5551212").unwrap().as_deref(), Some("Alice"));
        db.put("cidname", "5551212", "Bob").unwrap();
        assert_eq!(db.get("cidname", "5551212").unwrap().as_deref(), Some("Bob"));
        assert_eq!(db.show("/blacklist").unwrap().len(), 3);
        assert_eq!(db.deltree("blacklist", Some("sub")).unwrap(), 2);
        assert!(db.del("blacklist", "666").unwrap());
        assert!(!db.del("blacklist", "666").unwrap());
        assert_eq!(db.show("").unwrap(), [("/cidname/5551212".to_owned(), "Bob".to_owned())]);
        // LIKE wildcards in names are literal.
        db.put("a_b", "k", "1").unwrap();
        db.put("axb", "k", "2").unwrap();
        assert_eq!(db.show("/a_b").unwrap().len(), 1);
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStorage::open(dir.path()).unwrap().put("f", "k", "v").unwrap();
        assert_eq!(SqliteStorage::open(dir.path()).unwrap().get("f", "k").unwrap().as_deref(), Some("v"));
    }
}
