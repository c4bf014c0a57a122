//! The spool, laid out as Asterisk's (so tools that read Asterisk's spool read this one):
//! `<spooldir>/voicemail/<context>/<mailbox>/` holds the greetings (`unavail.wav`, `busy.wav`,
//! `temp.wav`, `greet.wav`) and a folder per message folder (`INBOX`, `Old`, ...), each with
//! `msgNNNN.wav` and its `msgNNNN.txt` (`[message]`, see [`MessageInfo`]).
//!
//! Numbering: a message's number is taken by creating its `.txt` with `create_new` (one
//! `open(O_EXCL)`), so two callers leaving messages at once never share a number; the `.wav`
//! is written beside it under a temporary name and renamed into place. A folder's messages
//! are counted by their `.txt`.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// Asterisk's folder names (`mbox()`), by number as VoiceMailMain's menus use them.
pub const FOLDERS: [&str; 5] = ["INBOX", "Old", "Work", "Family", "Friends"];

/// `<spooldir>/voicemail/<context>/<mailbox>`.
pub fn mailbox_dir(spooldir: &Path, context: &str, mailbox: &str) -> PathBuf {
    spooldir.join("voicemail").join(context).join(mailbox)
}

/// `msg0007` in `folder`.
pub fn message_base(folder: &Path, number: u32) -> PathBuf {
    folder.join(format!("msg{number:04}"))
}

/// The message numbers in `folder`, in order (a folder that does not exist has none).
pub fn messages(folder: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut numbers: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let digits = name.strip_prefix("msg")?.strip_suffix(".txt")?;
            (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// How many messages `folder` holds.
pub fn count(folder: &Path) -> u32 {
    messages(folder).len() as u32
}

/// Takes the lowest free number in `folder` (made if missing), below `maxmsg`: its `.txt` is
/// created empty and is this caller's. `None`: the folder is full.
pub fn reserve(folder: &Path, maxmsg: u32) -> io::Result<Option<u32>> {
    std::fs::create_dir_all(folder)?;
    for number in 0..maxmsg.min(10_000) {
        let txt = message_base(folder, number).with_extension("txt");
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&txt) {
            Ok(_) => return Ok(Some(number)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The spool's lock (Asterisk's `vm_lock_path` on a folder, here one for the whole spool of
/// this process): held while a message is stored, copied, or a folder is read or renumbered,
/// so a folder is never renumbered under a message being written. Held only around file
/// operations, never across a wait.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    static SPOOL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SPOOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores a new message in `folder` under the spool's lock: its number (the lowest free one
/// below `maxmsg`), `None` when the folder is full.
pub fn store(folder: &Path, maxmsg: u32, wav: &[u8], txt: &str) -> io::Result<Option<u32>> {
    let _lock = lock();
    let Some(number) = reserve(folder, maxmsg)? else { return Ok(None) };
    let base = message_base(folder, number);
    let written = write_atomically(&base.with_extension("wav"), wav)
        .and_then(|()| write_atomically(&base.with_extension("txt"), txt.as_bytes()));
    match written {
        Ok(()) => Ok(Some(number)),
        Err(e) => {
            remove(folder, number);
            Err(e)
        }
    }
}

/// Writes `path` whole: to a temporary name beside it, then renamed over it.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Removes message `number` (its `.txt` and every recording of it).
pub fn remove(folder: &Path, number: u32) {
    let base = message_base(folder, number);
    for ext in ["wav", "WAV", "gsm", "txt"] {
        let _ = std::fs::remove_file(base.with_extension(ext));
    }
}

/// Moves message `number` of `from` to the next free number of `to`; the new number.
pub fn move_message(from: &Path, number: u32, to: &Path, maxmsg: u32) -> io::Result<Option<u32>> {
    let Some(target) = reserve(to, maxmsg)? else { return Ok(None) };
    let (source, dest) = (message_base(from, number), message_base(to, target));
    for ext in ["wav", "WAV", "gsm"] {
        let file = source.with_extension(ext);
        if file.exists() {
            std::fs::rename(&file, dest.with_extension(ext))?;
        }
    }
    std::fs::rename(source.with_extension("txt"), dest.with_extension("txt"))?;
    Ok(Some(target))
}

/// Copies message `number` of `from` to the next free number of `to` (Asterisk's
/// `copy_message`/`save_to_folder`); the new number, `None` when `to` is full.
pub fn copy_message(from: &Path, number: u32, to: &Path, maxmsg: u32) -> io::Result<Option<u32>> {
    let Some(target) = reserve(to, maxmsg)? else { return Ok(None) };
    let (source, dest) = (message_base(from, number), message_base(to, target));
    let copied = (|| {
        for ext in ["wav", "WAV", "gsm"] {
            let file = source.with_extension(ext);
            if file.exists() {
                let data = std::fs::read(&file)?;
                write_atomically(&dest.with_extension(ext), &data)?;
            }
        }
        let info = std::fs::read(source.with_extension("txt"))?;
        write_atomically(&dest.with_extension("txt"), &info)
    })();
    match copied {
        Ok(()) => Ok(Some(target)),
        Err(e) => {
            remove(to, target);
            Err(e)
        }
    }
}

/// Removes a greeting (`<mailbox>/temp`) in every format.
pub fn remove_recording(base: &Path) {
    for ext in ["wav", "WAV", "gsm", "sln", "ulaw", "alaw"] {
        let _ = std::fs::remove_file(base.with_extension(ext));
    }
}

/// Closes the gaps deletions left (Asterisk's `resequence_mailbox`): messages keep their order
/// and become 0, 1, 2...
pub fn resequence(folder: &Path) -> io::Result<()> {
    for (want, have) in messages(folder).into_iter().enumerate() {
        let want = want as u32;
        if want == have {
            continue;
        }
        let (source, dest) = (message_base(folder, have), message_base(folder, want));
        for ext in ["wav", "WAV", "gsm", "txt"] {
            let file = source.with_extension(ext);
            if file.exists() {
                std::fs::rename(&file, dest.with_extension(ext))?;
            }
        }
    }
    Ok(())
}

/// A message's `[message]` file, with Asterisk's fields in Asterisk's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo {
    pub origmailbox: String,
    pub context: String,
    pub macrocontext: String,
    pub exten: String,
    pub rdnis: String,
    pub priority: u32,
    pub callerchan: String,
    /// `"Name" <number>` (Asterisk's `ast_callerid_merge`), `Unknown` without one.
    pub callerid: String,
    /// `Mon Dec  7 04:05:06 PM UTC 2026` (Asterisk's `get_date`: `%a %b %e %r UTC %Y`, in UTC).
    pub origdate: String,
    pub origtime: i64,
    pub category: String,
    pub msg_id: String,
    pub flag: String,
    /// Seconds.
    pub duration: u32,
}

impl MessageInfo {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(";\n; Message Information file\n;\n[message]\n");
        let _ = write!(
            out,
            "origmailbox={}\ncontext={}\nmacrocontext={}\nexten={}\nrdnis={}\npriority={}\ncallerchan={}\n\
             callerid={}\norigdate={}\norigtime={}\ncategory={}\nmsg_id={}\nflag={}\nduration={}\n",
            self.origmailbox,
            self.context,
            self.macrocontext,
            self.exten,
            self.rdnis,
            self.priority,
            self.callerchan,
            self.callerid,
            self.origdate,
            self.origtime,
            self.category,
            self.msg_id,
            self.flag,
            self.duration
        );
        out
    }

    /// Reads the fields back from a file's text (unknown keys and other lines are skipped).
    pub fn parse(text: &str) -> MessageInfo {
        let mut info = MessageInfo::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.to_owned();
            match key.trim() {
                "origmailbox" => info.origmailbox = value,
                "context" => info.context = value,
                "macrocontext" => info.macrocontext = value,
                "exten" => info.exten = value,
                "rdnis" => info.rdnis = value,
                "priority" => info.priority = value.trim().parse().unwrap_or(0),
                "callerchan" => info.callerchan = value,
                "callerid" => info.callerid = value,
                "origdate" => info.origdate = value,
                "origtime" => info.origtime = value.trim().parse().unwrap_or(0),
                "category" => info.category = value,
                "msg_id" => info.msg_id = value,
                "flag" => info.flag = value,
                "duration" => info.duration = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        info
    }
}

/// Asterisk's `ast_callerid_merge`: `"name" <num>`, the one there is, or `unknown`.
pub fn callerid_merge(name: &str, number: &str, unknown: &str) -> String {
    match (name.is_empty(), number.is_empty()) {
        (false, false) => format!("\"{name}\" <{number}>"),
        (false, true) => name.to_owned(),
        (true, false) => number.to_owned(),
        (true, true) => unknown.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of this test's own (`<tmp>/vm-spool-<pid>-<name>/INBOX`); remove its parent
    /// (never the system's temporary folder itself) when done.
    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vm-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("INBOX")
    }

    #[test]
    fn numbers_are_taken_once_and_resequenced() {
        let folder = temp("numbers");
        assert_eq!(count(&folder), 0);
        let taken: Vec<_> = (0..3).map(|_| reserve(&folder, 3).unwrap()).collect();
        assert_eq!(taken, [Some(0), Some(1), Some(2)]);
        assert_eq!(reserve(&folder, 3).unwrap(), None, "full at maxmsg");
        std::fs::write(message_base(&folder, 2).with_extension("wav"), b"x").unwrap();
        remove(&folder, 0);
        assert_eq!(messages(&folder), [1, 2]);
        resequence(&folder).unwrap();
        assert_eq!(messages(&folder), [0, 1]);
        assert!(message_base(&folder, 1).with_extension("wav").exists());
        let old = folder.with_file_name("Old");
        assert_eq!(move_message(&folder, 1, &old, 10).unwrap(), Some(0));
        assert_eq!((count(&folder), count(&old)), (1, 1));
        assert!(message_base(&old, 0).with_extension("wav").exists());
        let _ = std::fs::remove_dir_all(folder.parent().unwrap());
        assert!(std::env::temp_dir().exists());
    }

    /// A folder holding the messages `numbers`, each `.txt` and `.wav` naming its old number.
    fn folder_with(name: &str, numbers: &[u32]) -> PathBuf {
        let folder = temp(name);
        std::fs::create_dir_all(&folder).unwrap();
        for &n in numbers {
            std::fs::write(message_base(&folder, n).with_extension("txt"), format!("was={n}")).unwrap();
            std::fs::write(message_base(&folder, n).with_extension("wav"), format!("audio {n}")).unwrap();
        }
        folder
    }

    #[test]
    fn renumbering_keeps_the_order_and_leaves_no_gaps() {
        let folder = folder_with("gaps", &[1, 4, 7, 12]);
        std::fs::write(folder.join("msg0x.txt"), "not a message").unwrap();
        resequence(&folder).unwrap();
        assert_eq!(messages(&folder), [0, 1, 2, 3]);
        for (now, was) in [(0, 1), (1, 4), (2, 7), (3, 12)] {
            let base = message_base(&folder, now);
            assert_eq!(std::fs::read_to_string(base.with_extension("txt")).unwrap(), format!("was={was}"));
            assert_eq!(std::fs::read_to_string(base.with_extension("wav")).unwrap(), format!("audio {was}"));
        }
        // Copied (saved to a folder, forwarded): the next number there, the source kept.
        let work = folder.with_file_name("Work");
        assert_eq!(copy_message(&folder, 2, &work, 10).unwrap(), Some(0));
        assert_eq!(copy_message(&folder, 3, &work, 10).unwrap(), Some(1));
        assert_eq!(copy_message(&folder, 0, &work, 2).unwrap(), None, "Work is full at maxmsg 2");
        assert_eq!(std::fs::read_to_string(message_base(&work, 1).with_extension("wav")).unwrap(), "audio 12");
        assert_eq!(count(&folder), 4);
        assert!(copy_message(&folder, 9, &work, 10).is_err(), "no such message");
        assert_eq!(count(&work), 2, "a failed copy leaves nothing behind");
        let _ = std::fs::remove_dir_all(folder.parent().unwrap());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any set of numbers becomes 0..n, in the same order.
        #[test]
        fn any_folder_is_renumbered_in_order(numbers in proptest::collection::btree_set(0u32..60, 0..12)) {
            let numbers: Vec<u32> = numbers.into_iter().collect();
            let folder = folder_with("prop", &numbers);
            resequence(&folder).unwrap();
            proptest::prop_assert_eq!(messages(&folder), (0..numbers.len() as u32).collect::<Vec<_>>());
            for (now, was) in numbers.iter().enumerate() {
                let text = std::fs::read_to_string(message_base(&folder, now as u32).with_extension("txt")).unwrap();
                proptest::prop_assert_eq!(text, format!("was={was}"));
            }
            let _ = std::fs::remove_dir_all(folder.parent().unwrap());
        }
    }

    #[test]
    fn concurrent_reservations_never_share_a_number() {
        let folder = temp("race");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let folder = folder.clone();
                std::thread::spawn(move || reserve(&folder, 100).unwrap().unwrap())
            })
            .collect();
        let mut got: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(folder.parent().unwrap());
    }

    #[test]
    fn message_info_round_trips_in_asterisks_layout() {
        let info = MessageInfo {
            origmailbox: "1002".into(),
            context: "default".into(),
            exten: "1002".into(),
            rdnis: "unknown".into(),
            priority: 2,
            callerchan: "SIP/alice-00000001".into(),
            callerid: callerid_merge("Alice", "1001", "Unknown"),
            origdate: "Mon Dec  7 04:05:06 PM UTC 2026".into(),
            origtime: 1_796_659_506,
            msg_id: "1796659506-00000000".into(),
            duration: 3,
            ..Default::default()
        };
        let text = info.render();
        assert!(text.starts_with(";\n; Message Information file\n;\n[message]\norigmailbox=1002\ncontext=default\n"));
        assert!(text.contains("\ncallerid=\"Alice\" <1001>\n"));
        assert!(text.ends_with("flag=\nduration=3\n"));
        assert_eq!(MessageInfo::parse(&text), info);
        assert_eq!(MessageInfo::parse("garbage\n=\nduration=x\n").duration, 0);
        assert_eq!(callerid_merge("", "", "Unknown"), "Unknown");
    }
}
