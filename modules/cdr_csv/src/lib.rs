//! cdr_csv: call detail records appended to `logdir/cdr-csv/Master.csv`, byte for byte as
//! Asterisk's cdr_csv writes them: every text field in double quotes (a quote inside doubled),
//! the two durations bare, times as `YYYY-MM-DD HH:MM:SS`, fields in Asterisk's order
//! (`accountcode src dst dcontext clid channel dstchannel lastapp lastdata start answer end
//! duration billsec disposition amaflags [uniqueid] [userfield] [peeraccount linkedid sequence]`).
//!
//! `cdr.conf`'s `[csv]`: `usegmtime` (times in UTC), `loguniqueid`, `loguserfield`,
//! `accountlogs` (also append each record with an account code to `cdr-csv/<accountcode>.csv`),
//! `newcdrcolumns` (peeraccount, linkedid, sequence); Asterisk's defaults (all `no` but
//! `accountlogs`). The file is opened for each batch, so it can be rotated under us.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use starling_core::cdr::{format_time, CdrBackendModule, CdrRecord, CdrWriter};
use starling_core::config::ConfigErrors;
use starling_core::{LoadError, Module, ModuleContext, ReloadError};

/// `[csv]` of cdr.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CsvOptions {
    usegmtime: bool,
    loguniqueid: bool,
    loguserfield: bool,
    accountlogs: bool,
    newcdrcolumns: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            usegmtime: false,
            loguniqueid: false,
            loguserfield: false,
            accountlogs: true,
            newcdrcolumns: false,
        }
    }
}

impl CsvOptions {
    fn from_config(config: &starling_core::config::Config) -> Result<CsvOptions, ConfigErrors> {
        let mut options = CsvOptions::default();
        if let Some(section) = config.section("csv") {
            let CsvOptions { usegmtime, loguniqueid, loguserfield, accountlogs, newcdrcolumns } = &mut options;
            section.read_flags(
                &mut [
                    ("usegmtime", usegmtime),
                    ("loguniqueid", loguniqueid),
                    ("loguserfield", loguserfield),
                    ("accountlogs", accountlogs),
                    ("newcdrcolumns", newcdrcolumns),
                ],
                &[],
            )?;
        }
        Ok(options)
    }
}

/// Appends `"value",` with inner quotes doubled (cdr_csv's `append_string`).
fn quoted(line: &mut String, value: &str) {
    line.push('"');
    for c in value.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push_str("\",");
}

/// One record as a Master.csv line (with its newline).
fn csv_line(record: &CdrRecord, options: &CsvOptions) -> String {
    let time = |t: Option<std::time::SystemTime>| t.map(|t| format_time(t, options.usegmtime)).unwrap_or_default();
    let mut line = String::with_capacity(256);
    for field in [
        &record.accountcode,
        &record.src,
        &record.dst,
        &record.dcontext,
        &record.clid,
        &record.channel,
        &record.dstchannel,
        &record.lastapp,
        &record.lastdata,
        &time(Some(record.start)),
        &time(record.answer),
        &time(Some(record.end)),
    ] {
        quoted(&mut line, field);
    }
    line.push_str(&format!("{},{},", record.duration, record.billsec));
    quoted(&mut line, record.disposition.as_str());
    quoted(&mut line, record.amaflags.as_str());
    if options.loguniqueid {
        quoted(&mut line, &record.uniqueid);
    }
    if options.loguserfield {
        quoted(&mut line, &record.userfield);
    }
    if options.newcdrcolumns {
        quoted(&mut line, ""); // peeraccount
        quoted(&mut line, &record.linkedid);
        line.push_str(&format!("{},", record.sequence));
    }
    line.pop();
    line.push('\n');
    line
}

struct CsvWriter {
    dir: PathBuf,
    /// Shared with the module, which replaces them on reload.
    options: Arc<Mutex<CsvOptions>>,
}

impl CsvWriter {
    fn append(&self, file: &str, text: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl CdrWriter for CsvWriter {
    fn write(&mut self, batch: &[Arc<CdrRecord>]) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let options = self.options.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let lines: Vec<String> = batch.iter().map(|r| csv_line(r, &options)).collect();
        self.append("Master.csv", &lines.concat())?;
        if options.accountlogs {
            for (record, line) in batch.iter().zip(&lines) {
                // An account code that names a path is not written (as Asterisk refuses it).
                let account = &record.accountcode;
                if !account.is_empty() && !account.contains('/') && !account.starts_with('.') {
                    self.append(&format!("{account}.csv"), line)?;
                }
            }
        }
        Ok(())
    }
}

/// cdr.conf's `[csv]` (the defaults without the file).
fn read_options(ctx: &ModuleContext) -> Result<CsvOptions, ConfigErrors> {
    if ctx.config_dir().join("cdr.conf").exists() {
        CsvOptions::from_config(&ctx.load_config("cdr.conf")?)
    } else {
        Ok(CsvOptions::default())
    }
}

struct CdrCsv {
    options: Arc<Mutex<CsvOptions>>,
    _backend: CdrBackendModule,
}

impl Module for CdrCsv {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        let options = read_options(ctx)?;
        *self.options.lock().unwrap_or_else(|p| p.into_inner()) = options;
        Ok(())
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let options = Arc::new(Mutex::new(read_options(ctx)?));
    let writer = CsvWriter { dir: ctx.core().settings().logdir.join("cdr-csv"), options: options.clone() };
    let backend = CdrBackendModule::start(ctx.core(), "csv", writer)?;
    Ok(Box::new(CdrCsv { options, _backend: backend }))
}

starling_core::module! {
    description: "Comma Separated Values CDR Backend",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::cdr::{AmaFlags, Disposition};
    use std::time::{Duration, UNIX_EPOCH};

    fn record() -> CdrRecord {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        CdrRecord {
            accountcode: String::new(),
            src: "1001".into(),
            dst: "600".into(),
            dcontext: "default".into(),
            clid: "\"Alice \"A\"\" <1001>".into(),
            channel: "SIP/alice-00000001".into(),
            dstchannel: "SIP/bob-00000002".into(),
            lastapp: "Dial".into(),
            lastdata: "SIP/bob,30".into(),
            start,
            answer: Some(start + Duration::from_secs(3)),
            end: start + Duration::from_secs(13),
            duration: 13,
            billsec: 10,
            disposition: Disposition::Answered,
            amaflags: AmaFlags::Documentation,
            uniqueid: "1700000000.1".into(),
            linkedid: "1700000000.1".into(),
            userfield: String::new(),
            sequence: 0,
            variables: Vec::new(),
        }
    }

    #[test]
    fn lines_are_asterisks() {
        let gmt = CsvOptions { usegmtime: true, ..Default::default() };
        assert_eq!(
            csv_line(&record(), &gmt),
            "\"\",\"1001\",\"600\",\"default\",\"\"\"Alice \"\"A\"\"\"\" <1001>\",\"SIP/alice-00000001\",\
             \"SIP/bob-00000002\",\"Dial\",\"SIP/bob,30\",\"2023-11-14 22:13:20\",\"2023-11-14 22:13:23\",\
             \"2023-11-14 22:13:33\",13,10,\"ANSWERED\",\"DOCUMENTATION\"\n"
        );
        let all = CsvOptions { usegmtime: true, loguniqueid: true, loguserfield: true, newcdrcolumns: true, ..gmt };
        let mut unanswered = record();
        unanswered.answer = None;
        let line = csv_line(&unanswered, &all);
        assert!(line.ends_with(",\"\",\"2023-11-14 22:13:33\",13,10,\"ANSWERED\",\"DOCUMENTATION\",\"1700000000.1\",\"\",\"\",\"1700000000.1\",0\n"), "{line}");
    }

    #[test]
    fn options_read_csv_with_errors_at_their_line() {
        let config =
            starling_core::config::Config::parse_str("cdr.conf", "[csv]\nusegmtime=yes\naccountlogs=no\n").unwrap();
        let options = CsvOptions::from_config(&config).unwrap();
        assert!(options.usegmtime && !options.accountlogs && !options.loguniqueid);
        let config = starling_core::config::Config::parse_str("cdr.conf", "[csv]\nloguniqueid=perhaps\n").unwrap();
        assert!(CsvOptions::from_config(&config).unwrap_err().to_string().contains("cdr.conf:2"));
    }

    #[test]
    fn batches_append_to_master_and_account_files() {
        let dir = std::env::temp_dir().join(format!("cdr-csv-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut writer = CsvWriter { dir: dir.clone(), options: Default::default() };
        let mut billed = record();
        billed.accountcode = "acme".into();
        writer.write(&[Arc::new(record()), Arc::new(billed)]).unwrap();
        writer.write(&[Arc::new(record())]).unwrap();
        let master = std::fs::read_to_string(dir.join("Master.csv")).unwrap();
        assert_eq!(master.lines().count(), 3);
        let acme = std::fs::read_to_string(dir.join("acme.csv")).unwrap();
        assert_eq!(acme.lines().count(), 1);
        assert!(acme.starts_with("\"acme\",\"1001\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
