//! cdr_pgsql: call detail records in a PostgreSQL table, as Asterisk's cdr_pgsql writes them,
//! through tokio-postgres on the core's runtime, over TLS (rustls) when `sslmode` asks for it.
//!
//! `cdr_pgsql.conf`, `[global]` (Asterisk's keys and defaults): `hostname` (empty: the Unix
//! socket in `/var/run/postgresql`; a value starting with `/` is a socket directory), `port`
//! (5432), `dbname` (`asteriskcdrdb`), `user` (`asterisk`), `password` (none), `appname`
//! (PostgreSQL's `application_name`, no whitespace), `table` (`cdr`, or `schema.table`; read as
//! PostgreSQL reads an unquoted name, in lower case), `encoding` (accepted: this client always
//! speaks UTF8 and the server converts to the database's encoding), `timezone` (a zone name
//! such as `UTC`: times written as text or `timestamp` are that zone's wall clock, converted by
//! the server; without it, Starling's local time as Asterisk writes it), `sslmode` (libpq's names
//! and meanings: `disable` plain; `prefer`, the default, TLS when the server offers it, else
//! plain; `require` TLS or no connection, the server's certificate not checked; `verify-ca` TLS
//! with a certificate signed by a CA of `sslrootcert`; `verify-full` the same and for the host
//! name or address of `hostname`; `allow` is refused: tokio-postgres has no "plain first"),
//! `sslrootcert` (a PEM bundle of the CAs to trust; default the system's,
//! `/etc/ssl/certs/ca-certificates.crt`). Over a Unix socket (an empty or `/` hostname) TLS is
//! never used, as libpq's. `cdr show status` says the mode and whether the last connection is
//! encrypted: `pgsql (online, 0 spooled, sslmode=prefer, encrypted)`. No file, or no
//! `[global]`: the module declines. Unknown keys are warned about with their `file:line`; a bad
//! value is a configuration error.
//!
//! Columns: as Asterisk's, the table's columns are read (from `information_schema.columns`) at
//! each connection, and each record fills the ones it has by name: `accountcode src dst dcontext
//! clid channel dstchannel lastapp lastdata start answer end duration billsec disposition
//! amaflags uniqueid userfield linkedid sequence`, `calldate` (= start), and any other column
//! from the CDR variable of that name. A time goes to an integer column as Unix seconds, to a
//! float column with microseconds, to `timestamptz` as the instant, to anything else as
//! `YYYY-MM-DD HH:MM:SS`; `duration`/`billsec` to a float column with microseconds;
//! `disposition`/`amaflags` to an integer column as Asterisk's numbers (ANSWERED is 8, BILLING 2).
//! A column the record has no value for gets its default (or NULL; `''`/0 when it is NOT NULL
//! without a default, as Asterisk); `answer` is NULL for an unanswered call (1970-01-01 in a NOT
//! NULL column). Every value is sent as text and cast to the column's type, so a value longer
//! than a `varchar(n)` column is cut to n characters rather than losing the record.
//!
//! A missing table is created: `id bigserial` primary key, the text fields as `text`,
//! `start`/`answer`/`end` as `timestamp` (without time zone: the wall clock described above),
//! `duration`/`billsec`/`sequence` as `integer`.
//!
//! Records are written in batches on the backend's thread: one prepared `INSERT ... SELECT FROM
//! unnest($1::text[], ...)` per batch (one round trip, all or nothing; about 35,000 records/s in
//! batches of 1,000 on loopback), behind the core's spool
//! ([`CdrBackendModule::start_spooling`]): while PostgreSQL is down or unreachable the records
//! wait in `dbdir/cdr-spool.sqlite3` and are written, oldest first, when it is back, also after a
//! restart of Starling; `cdr show status` shows `pgsql (online|offline, N spooled)`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_core::cdr::{format_time, CdrBackendModule, CdrRecord, RemoteError, RemoteStatus, RemoteWriter};
use starling_core::config::{Config, ConfigErrors};
use starling_core::tokio::runtime::Handle;
use starling_core::tokio::time::timeout;
use starling_core::{tokio, tracing, verbose, LoadError, Module, ModuleContext};
use starling_tls::{ServerCheck, Setting};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

const CONFIG: &str = "cdr_pgsql.conf";

/// Where a connection is tried when `hostname` is empty (libpq's default on Debian).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// A connection (and reading the table's columns) that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch that PostgreSQL has not committed within this has failed (the connection is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[global]` of cdr_pgsql.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PgOptions {
    hostname: String,
    port: u16,
    dbname: String,
    user: String,
    password: String,
    appname: String,
    /// `(schema, table)`, lower case.
    table: (Option<String>, String),
    timezone: Option<String>,
    sslmode: SslMode,
    /// `sslrootcert`, with its line.
    sslrootcert: Option<Setting>,
}

/// `sslmode`, as libpq names its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value.to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the server's certificate must be (`None`: no TLS at all).
    fn check(self) -> Option<ServerCheck> {
        match self {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(ServerCheck::Nothing),
            SslMode::VerifyCa => Some(ServerCheck::Chain),
            SslMode::VerifyFull => Some(ServerCheck::ChainAndName),
        }
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            hostname: String::new(),
            port: 5432,
            dbname: "asteriskcdrdb".into(),
            user: "asterisk".into(),
            password: String::new(),
            appname: String::new(),
            table: (None, "cdr".into()),
            timezone: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
        }
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PgOptions {
    /// Reads `[global]`; `None` when the file has no such section (nothing configured).
    fn from_config(config: &Config) -> Result<Option<PgOptions>, ConfigErrors> {
        for section in config.sections() {
            if !section.name.eq_ignore_ascii_case("global") {
                tracing::warn!("{}: unknown section [{}] ignored", section.location, section.name);
            }
        }
        let Some(section) = config.section("global") else { return Ok(None) };
        let mut options = PgOptions::default();
        let mut errors = ConfigErrors::default();
        for var in &section.variables {
            let value = var.value.trim();
            match var.name.to_ascii_lowercase().as_str() {
                "hostname" if value.contains(char::is_whitespace) => errors.push(var.error("no whitespace allowed")),
                "hostname" => value.clone_into(&mut options.hostname),
                "port" => match value.parse::<u16>() {
                    Ok(port) if port > 0 => options.port = port,
                    _ => errors.push(var.error("a port is 1 to 65535")),
                },
                "dbname" if value.is_empty() => errors.push(var.error("a database name is required")),
                "dbname" => value.clone_into(&mut options.dbname),
                "user" if value.is_empty() => errors.push(var.error("a user name is required")),
                "user" => value.clone_into(&mut options.user),
                "password" => value.clone_into(&mut options.password),
                "appname" if value.contains(char::is_whitespace) => {
                    errors.push(var.error("no whitespace allowed in an application name"))
                }
                "appname" => value.clone_into(&mut options.appname),
                "table" => {
                    let lower = value.to_ascii_lowercase();
                    match lower.split_once('.') {
                        Some((schema, table)) if is_identifier(schema) && is_identifier(table) => {
                            options.table = (Some(schema.to_owned()), table.to_owned())
                        }
                        None if is_identifier(&lower) => options.table = (None, lower),
                        _ => errors.push(var.error("a table is [schema.]name, each letters, digits and _")),
                    }
                }
                "encoding" => {
                    if !is_identifier(&value.replace('-', "")) {
                        errors.push(var.error("an encoding name is letters, digits, - and _"));
                    } else if !matches!(value.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8" | "UNICODE") {
                        verbose!(
                            3,
                            "{}: cdr_pgsql sends UTF8; PostgreSQL converts it to the database's encoding",
                            var.location
                        );
                    }
                }
                "timezone" if value.is_empty() => options.timezone = None,
                "timezone" => {
                    if value.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-:".contains(c)) {
                        options.timezone = Some(value.to_owned());
                    } else {
                        errors.push(var.error("a time zone name is letters, digits and / _ + - :"));
                    }
                }
                "sslmode" => match SslMode::parse(value) {
                    Some(mode) => options.sslmode = mode,
                    None => errors.push(var.error("expected disable, prefer, require, verify-ca or verify-full")),
                },
                "sslrootcert" if value.is_empty() => errors.push(var.error("expected a file name")),
                "sslrootcert" => options.sslrootcert = Some(Setting::of(var)),
                other => tracing::warn!("{}: unknown [global] option '{other}' ignored", var.location),
            }
        }
        errors.into_result(Some(options))
    }

    /// The table as SQL (quoted).
    fn table_sql(&self) -> String {
        match &self.table {
            (Some(schema), table) => format!("{}.{}", quote(schema), quote(table)),
            (None, table) => quote(table),
        }
    }

    /// Whether `hostname` is a Unix socket's directory (no TLS there, as libpq).
    fn is_socket(&self) -> bool {
        self.hostname.is_empty() || self.hostname.starts_with('/')
    }

    /// The TLS client for `sslmode` (`None`: plain connections only); an unreadable
    /// `sslrootcert` is a configuration error at its line.
    fn tls(&self) -> Result<Option<MakeRustlsConnect>, starling_core::config::ConfigError> {
        match self.sslmode.check() {
            Some(check) if !self.is_socket() => {
                let config = starling_tls::client_config(check, self.sslrootcert.as_ref(), "sslrootcert")?;
                Ok(Some(MakeRustlsConnect::new(config)))
            }
            _ => Ok(None),
        }
    }

    /// Where the server is, for log lines.
    fn server(&self) -> String {
        let host = if self.hostname.is_empty() { DEFAULT_SOCKET_DIR } else { &self.hostname };
        format!("{host}:{}/{}", self.port, self.dbname)
    }

    fn client_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(if self.hostname.is_empty() { DEFAULT_SOCKET_DIR } else { &self.hostname })
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(match self.sslmode {
                _ if self.is_socket() => tokio_postgres::config::SslMode::Disable,
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if !self.password.is_empty() {
            config.password(&self.password);
        }
        if !self.appname.is_empty() {
            config.application_name(&self.appname);
        }
        config
    }
}

/// An SQL identifier in double quotes.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which part of the record a column takes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Start,
    Answer,
    End,
    Duration,
    Billsec,
    Disposition,
    AmaFlags,
    /// Another field by name (`src`, `uniqueid`...), else the CDR variable of that name.
    Named(String),
}

impl Source {
    fn of(column: &str) -> Source {
        match column {
            "start" | "calldate" => Source::Start,
            "answer" => Source::Answer,
            "end" => Source::End,
            "duration" => Source::Duration,
            "billsec" => Source::Billsec,
            "disposition" => Source::Disposition,
            "amaflags" => Source::AmaFlags,
            other => Source::Named(other.to_owned()),
        }
    }
}

/// How a column's type takes values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    TimestampTz,
    Text,
}

/// One column of the table, as read at connection.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Column {
    name: String,
    source: Source,
    kind: Kind,
    /// The type to cast the text value to.
    cast: String,
    nullable: bool,
    /// The column's default expression (the server's own text).
    default: Option<String>,
}

fn unix(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

impl Column {
    fn new(
        name: String,
        udt_schema: &str,
        udt_name: &str,
        length: Option<i32>,
        nullable: bool,
        default: Option<String>,
    ) -> Column {
        let kind = match udt_name {
            "int2" | "int4" | "int8" => Kind::Int,
            "float4" | "float8" | "numeric" => Kind::Float,
            "timestamptz" => Kind::TimestampTz,
            _ => Kind::Text,
        };
        let mut cast = format!("{}.{}", quote(udt_schema), quote(udt_name));
        if let Some(length) = length {
            cast.push_str(&format!("({length})"));
        }
        Column { source: Source::of(&name), name, kind, cast, nullable, default }
    }

    fn is_time(&self) -> bool {
        matches!(self.source, Source::Start | Source::Answer | Source::End)
    }

    /// The SQL that turns `value` (the text [`Column::cell`] made, or NULL) into this column's
    /// value: a cast to its type; a time in a zone converted by the server; NULL as the default.
    fn expression(&self, value: &str, timezone: Option<&str>) -> String {
        let typed = match timezone {
            Some(zone) if self.is_time() && self.kind == Kind::Text => format!(
                "to_char({value}::timestamptz AT TIME ZONE '{}', 'YYYY-MM-DD HH24:MI:SS')::text::{}",
                zone.replace('\'', "''"),
                self.cast
            ),
            _ => format!("{value}::{}", self.cast),
        };
        match &self.default {
            Some(default) => format!("COALESCE({typed}, {default})"),
            None => typed,
        }
    }

    /// This column's value for a record, as text (`None`: NULL, or the default if it has one).
    fn cell(&self, record: &CdrRecord, timezone: Option<&str>) -> Option<String> {
        let time = |t: SystemTime| -> String {
            match self.kind {
                Kind::Int => unix(t).as_secs().to_string(),
                Kind::Float => format!("{:.6}", unix(t).as_secs_f64()),
                // An instant (the server converts it to the zone asked for).
                Kind::TimestampTz => format!("{}+00", format_time(t, true)),
                Kind::Text if timezone.is_some() => format!("{}+00", format_time(t, true)),
                Kind::Text => format_time(t, false),
            }
        };
        let value = match &self.source {
            Source::Start => Some(time(record.start)),
            Source::End => Some(time(record.end)),
            Source::Answer => match record.answer {
                Some(answer) => Some(time(answer)),
                None if !self.nullable && self.default.is_none() => Some(time(UNIX_EPOCH)),
                None => None,
            },
            Source::Duration | Source::Billsec if self.kind == Kind::Float => {
                let from = match self.source {
                    Source::Duration => Some(record.start),
                    _ => record.answer,
                };
                Some(format!("{:.6}", from.map_or(0.0, |from| seconds_between(from, record.end))))
            }
            Source::Duration => Some(record.duration.to_string()),
            Source::Billsec => Some(record.billsec.to_string()),
            Source::Disposition if self.kind == Kind::Int => Some(record.disposition.code().to_string()),
            Source::Disposition => Some(record.disposition.as_str().to_owned()),
            Source::AmaFlags if self.kind == Kind::Int => Some(record.amaflags.code().to_string()),
            Source::AmaFlags => Some(record.amaflags.as_str().to_owned()),
            Source::Named(name) => {
                let value = record.field(name).or_else(|| {
                    record.variables.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
                });
                // Asterisk: a number column takes what parses as one, else 0.
                value.map(|v| match self.kind {
                    Kind::Int => v.trim().parse::<i64>().unwrap_or(0).to_string(),
                    Kind::Float => v.trim().parse::<f64>().unwrap_or(0.0).to_string(),
                    _ => v,
                })
            }
        };
        match value {
            None if !self.nullable && self.default.is_none() => {
                // NOT NULL without a default: Asterisk writes an empty value.
                Some(if matches!(self.kind, Kind::Int | Kind::Float) { "0" } else { "" }.into())
            }
            value => value,
        }
    }
}

/// The table Starling creates when there is none.
fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id bigserial PRIMARY KEY,
            accountcode text, src text, dst text, dcontext text, clid text, channel text,
            dstchannel text, lastapp text, lastdata text,
            start timestamp, answer timestamp, \"end\" timestamp,
            duration integer, billsec integer, disposition text, amaflags text,
            uniqueid text, userfield text, linkedid text, sequence integer)"
    )
}

/// The table's columns that can take a value, in order (generated and identity columns make
/// their own).
async fn read_columns(client: &Client, options: &PgOptions) -> Result<Vec<Column>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT column_name::text, udt_schema::text, udt_name::text, character_maximum_length::int4,
                    is_nullable::text = 'YES', column_default::text
             FROM information_schema.columns
             WHERE table_schema = COALESCE($1::text, current_schema()) AND table_name = $2::text
               AND is_generated::text <> 'ALWAYS' AND is_identity::text <> 'YES'
             ORDER BY ordinal_position",
            &[&options.table.0, &options.table.1],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Column::new(
                row.try_get(0)?,
                row.try_get::<_, &str>(1)?,
                row.try_get::<_, &str>(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            ))
        })
        .collect()
}

/// The INSERT of a batch: one text array per column, unnested into rows and cast to the
/// columns' types by the server; prepared once per connection, whatever the batch's size.
fn insert_sql(table: &str, columns: &[Column], timezone: Option<&str>) -> String {
    let names = columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
    let expressions = columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.expression(&format!("v.c{}", i + 1), timezone))
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = (1..=columns.len()).map(|n| format!("${n}::text[]")).collect::<Vec<_>>().join(", ");
    let aliases = (1..=columns.len()).map(|n| format!("c{n}")).collect::<Vec<_>>().join(", ");
    format!("INSERT INTO {table} ({names}) SELECT {expressions} FROM unnest({arrays}) AS v({aliases})")
}

/// Inserts a batch: one statement, so all or nothing.
async fn insert(
    connection: &Connection,
    timezone: Option<&str>,
    batch: &[Arc<CdrRecord>],
) -> Result<u64, tokio_postgres::Error> {
    let arrays: Vec<Vec<Option<String>>> =
        connection.columns.iter().map(|c| batch.iter().map(|r| c.cell(r, timezone)).collect()).collect();
    let parameters: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    connection.client.execute(&connection.insert, &parameters).await
}

/// What a PostgreSQL error means for the records: refused for their data (SQLSTATE classes 22,
/// data exception, and 23, integrity constraint violation), or the database is not usable now.
fn classify(error: &tokio_postgres::Error) -> RemoteError {
    let text = describe(error);
    match error.code().map(|c| c.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => RemoteError::Rejected(text),
        _ => RemoteError::Unavailable(text),
    }
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("PostgreSQL: {} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("PostgreSQL: {error}: {source}"),
            None => format!("PostgreSQL: {error}"),
        },
    }
}

/// A live connection, the table's columns and the INSERT prepared for them.
struct Connection {
    client: Client,
    columns: Vec<Column>,
    insert: Statement,
}

/// Whether the last connection is encrypted, for `cdr show status`.
const NOT_CONNECTED: u8 = 0;
const PLAIN: u8 = 1;
const ENCRYPTED: u8 = 2;

/// The rustls connector, noting whether a handshake was made: with `sslmode=prefer` the server
/// may answer that it has no TLS, and then tokio-postgres goes on in plain without calling it.
#[derive(Clone)]
struct NotingTls {
    inner: MakeRustlsConnect,
    encrypted: Arc<AtomicU8>,
}

impl<S> MakeTlsConnect<S> for NotingTls
where
    MakeRustlsConnect: MakeTlsConnect<S>,
    <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect: Send + 'static,
    <<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect as TlsConnect<S>>::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Noting<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Noting(MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, domain)?, self.encrypted.clone()))
    }
}

struct Noting<T>(T, Arc<AtomicU8>);

impl<S, T> TlsConnect<S> for Noting<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let Noting(inner, encrypted) = self;
        let handshake = inner.connect(stream);
        Box::pin(async move {
            let stream = handshake.await?;
            encrypted.store(ENCRYPTED, Ordering::Relaxed);
            Ok(stream)
        })
    }
}

/// The PostgreSQL side of the backend (the core's spool is in front of it).
struct PgWriter {
    options: PgOptions,
    config: tokio_postgres::Config,
    /// `None` with `sslmode=disable` or over a Unix socket.
    tls: Option<MakeRustlsConnect>,
    encrypted: Arc<AtomicU8>,
    table: String,
    runtime: Handle,
    connection: Option<Connection>,
}

impl PgWriter {
    fn new(options: PgOptions, tls: Option<MakeRustlsConnect>, runtime: Handle) -> PgWriter {
        PgWriter {
            config: options.client_config(),
            table: options.table_sql(),
            tls,
            encrypted: Arc::new(AtomicU8::new(NOT_CONNECTED)),
            options,
            runtime,
            connection: None,
        }
    }

    /// Connects, reads the columns (creating the table when there is none), prepares the INSERT.
    async fn open(
        config: tokio_postgres::Config,
        tls: Option<NotingTls>,
        options: PgOptions,
        table: String,
    ) -> Result<Connection, tokio_postgres::Error> {
        let client = match tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("cdr_pgsql: connection closed: {e}");
                    }
                });
                client
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("cdr_pgsql: connection closed: {e}");
                    }
                });
                client
            }
        };
        let mut columns = read_columns(&client, &options).await?;
        if columns.is_empty() {
            client.batch_execute(&create_table_sql(&table)).await?;
            tracing::info!("cdr_pgsql: created the table {table} in {}", options.server());
            columns = read_columns(&client, &options).await?;
        }
        let insert = client.prepare(&insert_sql(&table, &columns, options.timezone.as_deref())).await?;
        Ok(Connection { client, columns, insert })
    }

    fn connection(&mut self) -> Result<&mut Connection, RemoteError> {
        if self.connection.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.connection = None;
            self.encrypted.store(NOT_CONNECTED, Ordering::Relaxed);
        }
        if self.connection.is_none() {
            // Plain until a handshake says otherwise.
            self.encrypted.store(NOT_CONNECTED, Ordering::Relaxed);
            let tls = self.tls.clone().map(|inner| NotingTls { inner, encrypted: self.encrypted.clone() });
            let open = Self::open(self.config.clone(), tls, self.options.clone(), self.table.clone());
            let connection = match self.runtime.block_on(async { timeout(CONNECT_TIMEOUT * 2, open).await }) {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    return Err(RemoteError::Unavailable(format!("{}: {}", self.options.server(), describe(&e))))
                }
                Err(_) => {
                    return Err(RemoteError::Unavailable(format!("{}: no answer in time", self.options.server())))
                }
            };
            let _ = self.encrypted.compare_exchange(NOT_CONNECTED, PLAIN, Ordering::Relaxed, Ordering::Relaxed);
            let encrypted = self.encrypted.load(Ordering::Relaxed) == ENCRYPTED;
            verbose!(
                3,
                "cdr_pgsql: connected to {}, table {} ({} columns), sslmode={}, {}",
                self.options.server(),
                self.table,
                connection.columns.len(),
                self.options.sslmode.as_str(),
                if encrypted { "encrypted" } else { "not encrypted" }
            );
            self.connection = Some(connection);
        }
        self.connection.as_mut().ok_or_else(|| RemoteError::Unavailable("not connected".into()))
    }
}

impl RemoteWriter for PgWriter {
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), RemoteError> {
        let runtime = self.runtime.clone();
        let timezone = self.options.timezone.clone();
        let connection = self.connection()?;
        let result =
            runtime.block_on(async { timeout(WRITE_TIMEOUT, insert(connection, timezone.as_deref(), batch)).await });
        let error = match result {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => classify(&e),
            Err(_) => RemoteError::Unavailable(format!("PostgreSQL: no commit within {} s", WRITE_TIMEOUT.as_secs())),
        };
        if matches!(error, RemoteError::Unavailable(_)) {
            // Connect again (and read the columns again: the table may have changed).
            self.connection = None;
            self.encrypted.store(NOT_CONNECTED, Ordering::Relaxed);
        }
        Err(error)
    }

    fn connect(&mut self) -> Result<(), RemoteError> {
        self.connection().map(|_| ())
    }

    fn status(&self) -> Option<RemoteStatus> {
        let (mode, encrypted) = (self.options.sslmode.as_str(), self.encrypted.clone());
        Some(Arc::new(move || {
            let link = match encrypted.load(Ordering::Relaxed) {
                ENCRYPTED => "encrypted",
                PLAIN => "not encrypted",
                _ => "not connected",
            };
            format!("sslmode={mode}, {link}")
        }))
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    if !ctx.config_dir().join(CONFIG).exists() {
        return Err(LoadError::Decline(format!("no {CONFIG} in {}", ctx.config_dir().display())));
    }
    let Some(options) = PgOptions::from_config(&ctx.load_config(CONFIG)?)? else {
        return Err(LoadError::Decline(format!("no [global] in {CONFIG}")));
    };
    let tls = options.tls().map_err(|e| LoadError::Config(e.into()))?;
    verbose!(
        2,
        "cdr_pgsql: records go to {}, table {}, sslmode={}",
        options.server(),
        options.table_sql(),
        options.sslmode.as_str()
    );
    let writer = PgWriter::new(options, tls, ctx.runtime());
    Ok(Box::new(CdrBackendModule::start_spooling(ctx.core(), "pgsql", writer)?))
}

starling_core::module! {
    description: "PostgreSQL CDR Backend",
    support_level: Extended,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::cdr::{AmaFlags, Disposition};

    fn parse(text: &str) -> Result<Option<PgOptions>, String> {
        let config = Config::parse_str(CONFIG, text).map_err(|e| e.to_string())?;
        PgOptions::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn global_takes_asterisks_keys_and_bad_values_name_their_line() {
        assert_eq!(parse("[other]\nx=1\n").unwrap(), None);
        let options = parse(
            "[global]\nhostname=127.0.0.1\nport=5433\ndbname=cdrs\nuser=starling\npassword=s3cret\nappname=pbx1\n\
             table=Billing.CDR\nencoding=LATIN9\ntimezone=UTC\nnosuchkey=1\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            PgOptions {
                hostname: "127.0.0.1".into(),
                port: 5433,
                dbname: "cdrs".into(),
                user: "starling".into(),
                password: "s3cret".into(),
                appname: "pbx1".into(),
                table: (Some("billing".into()), "cdr".into()),
                timezone: Some("UTC".into()),
                sslmode: SslMode::Prefer,
                sslrootcert: None,
            }
        );
        assert_eq!(options.table_sql(), "\"billing\".\"cdr\"");
        assert_eq!(parse("[global]\n").unwrap().unwrap(), PgOptions::default());
        let err = parse("[global]\nport=70000\ntable=cdr-x\nappname=a b\ntimezone='x'\n").unwrap_err();
        for line in ["cdr_pgsql.conf:2: port", "cdr_pgsql.conf:3: table", "cdr_pgsql.conf:4: appname", ":5: timezone"] {
            assert!(err.contains(line), "{line}: {err}");
        }
    }

    #[test]
    fn sslmode_takes_libpqs_names() {
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("Verify-Full", SslMode::VerifyFull),
        ] {
            let options = parse(&format!("[global]\nhostname=db\nsslmode={value}\n")).unwrap().unwrap();
            assert_eq!(options.sslmode, mode, "{value}");
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        let err = parse("[global]\nsslmode=allow\nsslrootcert=\n").unwrap_err();
        assert!(
            err.contains("cdr_pgsql.conf:2: sslmode 'allow'") && err.contains("cdr_pgsql.conf:3: sslrootcert"),
            "{err}"
        );
        // No TLS over a Unix socket, nor with disable; a CA file that cannot be read is an error at its line.
        let socket = parse("[global]\nsslmode=require\n").unwrap().unwrap();
        assert!(socket.tls().unwrap().is_none());
        let disabled = parse("[global]\nhostname=db\nsslmode=disable\n").unwrap().unwrap();
        assert!(disabled.tls().unwrap().is_none());
        let verify =
            parse("[global]\nhostname=db\nsslmode=verify-full\nsslrootcert=/nonexistent/ca.pem\n").unwrap().unwrap();
        let err = verify.tls().err().unwrap().to_string();
        assert!(err.starts_with("cdr_pgsql.conf:4: sslrootcert '/nonexistent/ca.pem': cannot read it"), "{err}");
    }

    fn column(name: &str, udt: &str, nullable: bool, has_default: bool) -> Column {
        Column::new(name.into(), "pg_catalog", udt, None, nullable, has_default.then(|| "7".into()))
    }

    #[test]
    fn cells_follow_the_column_types_as_asterisks_do() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let record = CdrRecord {
            accountcode: String::new(),
            src: "1001".into(),
            dst: "600".into(),
            dcontext: "default".into(),
            clid: "1001".into(),
            channel: "SIP/a-1".into(),
            dstchannel: String::new(),
            lastapp: "Dial".into(),
            lastdata: String::new(),
            start,
            answer: None,
            end: start + Duration::from_millis(4500),
            duration: 4,
            billsec: 0,
            disposition: Disposition::Busy,
            amaflags: AmaFlags::Billing,
            uniqueid: "1.1".into(),
            linkedid: "1.1".into(),
            userfield: String::new(),
            sequence: 3,
            variables: vec![("tenant".into(), "42".into())],
        };
        let cell = |c: Column| c.cell(&record, None);
        assert_eq!(cell(column("start", "int8", true, false)), Some("1700000000".into()));
        assert_eq!(cell(column("calldate", "float8", true, false)), Some("1700000000.250000".into()));
        assert_eq!(cell(column("end", "timestamptz", true, false)), Some("2023-11-14 22:13:24+00".into()));
        assert_eq!(cell(column("answer", "timestamp", true, false)), None);
        assert_eq!(cell(column("answer", "timestamp", false, false)), Some(format_time(UNIX_EPOCH, false)));
        assert_eq!(cell(column("duration", "float8", true, false)), Some("4.500000".into()));
        assert_eq!(cell(column("billsec", "int4", true, false)), Some("0".into()));
        assert_eq!(cell(column("disposition", "int4", true, false)), Some("4".into()));
        assert_eq!(cell(column("disposition", "varchar", true, false)), Some("BUSY".into()));
        assert_eq!(cell(column("amaflags", "int2", true, false)), Some("2".into()));
        assert_eq!(cell(column("sequence", "int4", true, false)), Some("3".into()));
        assert_eq!(cell(column("tenant", "int4", true, false)), Some("42".into()));
        assert_eq!(cell(column("id", "int8", false, true)), None);
        assert_eq!(cell(column("peeraccount", "varchar", true, false)), None);
        assert_eq!(cell(column("peeraccount", "varchar", false, false)), Some(String::new()));
        let start = Column::new("start".into(), "pg_catalog", "varchar", Some(19), true, None);
        assert_eq!(
            start.expression("v.c4", Some("UTC")),
            "to_char(v.c4::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')::text::\"pg_catalog\".\"varchar\"(19)"
        );
        let note = Column::new("note".into(), "pg_catalog", "text", None, true, Some("'none'::text".into()));
        assert_eq!(
            insert_sql("\"cdr\"", &[column("src", "text", true, false), note], Some("UTC")),
            "INSERT INTO \"cdr\" (\"src\", \"note\") SELECT v.c1::\"pg_catalog\".\"text\", \
             COALESCE(v.c2::\"pg_catalog\".\"text\", 'none'::text) FROM unnest($1::text[], $2::text[]) AS v(c1, c2)"
        );
    }
}
