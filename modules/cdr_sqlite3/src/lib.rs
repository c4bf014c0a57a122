//! cdr_sqlite3: call detail records in an SQLite database, `logdir/master.db` (where Asterisk's
//! cdr_sqlite3_custom keeps its own), table `cdr`, one column per CDR field (Asterisk's names;
//! `start`, `answer` and `end` as `YYYY-MM-DD HH:MM:SS` local time, `answer` NULL when
//! unanswered), plus `linkedid` and `sequence`. The database runs in WAL mode and records are
//! inserted in batches, one transaction each, on the backend's own thread.
//!
//! `cdr.conf`'s `[sqlite3]` may name another `db` file (relative to `logdir`) and `table`.
//!
//! The writer itself is the core's [`SqliteWriter`]: SQLite is linked into the core, whose
//! dylib does not export its C symbols to modules.

use starling_core::cdr::{CdrBackendModule, SqliteWriter};
use starling_core::config::{ConfigError, ConfigErrors};
use starling_core::{tracing, LoadError, Module, ModuleContext};
use std::path::PathBuf;

/// `[sqlite3]` of cdr.conf: the database file and the table.
fn options(ctx: &ModuleContext) -> Result<(PathBuf, String), ConfigErrors> {
    let logdir = ctx.core().settings().logdir.clone();
    let (mut db, mut table) = (logdir.join("master.db"), "cdr".to_owned());
    if !ctx.config_dir().join("cdr.conf").exists() {
        return Ok((db, table));
    }
    let config = ctx.load_config("cdr.conf")?;
    let Some(section) = config.section("sqlite3") else { return Ok((db, table)) };
    let mut errors = ConfigErrors::default();
    for var in &section.variables {
        match var.name.to_ascii_lowercase().as_str() {
            "db" => db = logdir.join(var.value.trim()),
            "table" => {
                let name = var.value.trim();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    errors.push(var.error("a table name is letters, digits and _"));
                } else {
                    table = name.to_owned();
                }
            }
            other => tracing::warn!("{}: unknown [sqlite3] option '{other}' ignored", var.location),
        }
    }
    errors.into_result((db, table))
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let (db, table) = options(ctx)?;
    let writer = SqliteWriter::open(&db, &table).map_err(|e| LoadError::Config(ConfigError::new(None, e).into()))?;
    Ok(Box::new(CdrBackendModule::start(ctx.core(), "sqlite3", writer)?))
}

starling_core::module! {
    description: "SQLite3 CDR Backend",
    support_level: Core,
    load: load,
}
