//! A mailbox's password written back to `voicemail.conf` (Asterisk's `vm_change_password` with
//! `passwordlocation=voicemail.conf`, its default). Asterisk loads the file with its comments,
//! replaces the password (the value up to the first comma) of the mailbox's line in every
//! section named as the mailbox's context, and saves the whole file again. Starling changes
//! only that line's password: every other byte of the file, comments and layout included,
//! stays as it was.

use std::path::Path;

/// `text` with the password of `mailbox` in `[context]` set to `password`; `None` when no
/// such line was found (the file is then left alone). Section and mailbox names compare
/// without case, as Asterisk's `ast_category_browse`/`ast_variable_retrieve` do.
pub fn rewrite(text: &str, context: &str, mailbox: &str, password: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + password.len());
    let mut in_context = false;
    let mut in_block_comment = false;
    let mut found = false;
    for line in text.split_inclusive('\n') {
        // A `;--` ... `--;` block comment (Asterisk's multi-line comments) hides what it holds.
        if in_block_comment {
            if line.contains("--;") {
                in_block_comment = false;
            }
            out.push_str(line);
            continue;
        }
        let code = code_part(line);
        if let Some(comment) = line[code.len()..].strip_prefix(";--") {
            if !comment.contains("--;") {
                in_block_comment = true;
            }
        }
        let trimmed = code.trim();
        if let Some(rest) = trimmed.strip_prefix('[') {
            in_context = rest.split_once(']').is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(context));
            out.push_str(line);
            continue;
        }
        if in_context {
            if let Some(changed) = rewrite_line(line, code.len(), mailbox, password) {
                out.push_str(&changed);
                found = true;
                continue;
            }
        }
        out.push_str(line);
    }
    found.then_some(out)
}

/// The part of `line` before its comment (`;` not escaped as `\;`).
fn code_part(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b';' => return &line[..i],
            _ => i += 1,
        }
    }
    line.trim_end_matches(['\n', '\r'])
}

/// `line` with its password replaced, when it is `mailbox => password,...` (or `=`); the code
/// part is the first `code_len` bytes.
fn rewrite_line(line: &str, code_len: usize, mailbox: &str, password: &str) -> Option<String> {
    let code = &line[..code_len];
    let eq = code.find('=')?;
    if !code[..eq].trim().eq_ignore_ascii_case(mailbox) {
        return None;
    }
    let value_start = if code[eq + 1..].starts_with('>') { eq + 2 } else { eq + 1 };
    let value = &code[value_start..];
    let field_end = value.find(',').unwrap_or(value.len());
    let field = &value[..field_end];
    // Keep the blanks around the old password where they were.
    let lead = field.len() - field.trim_start().len();
    let trail = field.len() - field.trim_end().len();
    let (start, end) = if field.trim().is_empty() {
        (value_start + field.len(), value_start + field.len())
    } else {
        (value_start + lead, value_start + field_end - trail)
    };
    let mut out = String::with_capacity(line.len() + password.len());
    out.push_str(&line[..start]);
    out.push_str(password);
    out.push_str(&line[end..]);
    Some(out)
}

/// Why a password could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("mailbox {0} not found in {1}")]
    NotFound(String, String),
}

/// The file of a mailbox's password with `passwordlocation=spooldir` (Asterisk's `secret.conf`
/// in the mailbox's spool folder: `[general]` and `password=`).
pub const SPOOL_FILE: &str = "secret.conf";

/// Writes a mailbox's `secret.conf` (Asterisk's `write_password_to_file`).
pub fn write_spool(file: &Path, password: &str) -> Result<(), WriteError> {
    let shown = file.display().to_string();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| WriteError::Io(shown.clone(), e))?;
    }
    crate::spool::write_atomically(file, format!("[general]\npassword={password}\n").as_bytes())
        .map_err(|e| WriteError::Io(shown, e))
}

/// The password in a mailbox's `secret.conf`, if it has one (Asterisk's
/// `read_password_from_file`).
pub fn read_spool(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "password").then(|| value.trim().to_owned())
    })
}

/// Rewrites `file` with `mailbox@context`'s new password (to a temporary file renamed over it).
pub fn write(file: &Path, context: &str, mailbox: &str, password: &str) -> Result<(), WriteError> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| WriteError::Io(shown.clone(), e))?;
    let changed = rewrite(&text, context, mailbox, password)
        .ok_or_else(|| WriteError::NotFound(format!("{mailbox}@{context}"), shown.clone()))?;
    crate::spool::write_atomically(file, changed.as_bytes()).map_err(|e| WriteError::Io(shown, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CONF: &str = "; voicemail.conf, with comments\n[general]\nformat=wav ; wav only\n\n[default]\n\
                        ; Bob's box\n1002 => 1234,Bob Bobson,bob@example.com,,attach=yes ; the boss\n\
                        1003=>9999,Carl\n[sales]\n1002 => 5555,Sales\n";

    #[test]
    fn secret_conf_is_written_and_read_back() {
        let dir = std::env::temp_dir().join(format!("stl-vm-secret-{}", std::process::id()));
        let file = dir.join("default/1002").join(SPOOL_FILE);
        write_spool(&file, "4321").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "[general]\npassword=4321\n");
        assert_eq!(read_spool(&file).as_deref(), Some("4321"));
        std::fs::write(&file, "garbage\n=\n[general]\n password = 77 \n").unwrap();
        assert_eq!(read_spool(&file).as_deref(), Some("77"));
        std::fs::write(&file, [0xff, 0xfe, b'\n']).unwrap();
        assert_eq!(read_spool(&file), None, "not text: none");
        assert_eq!(read_spool(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_password_of_the_mailbox_changes() {
        let out = rewrite(CONF, "default", "1002", "4321").unwrap();
        assert_eq!(out, CONF.replace("1002 => 1234,", "1002 => 4321,"));
        let out = rewrite(CONF, "DEFAULT", "1003", "0").unwrap();
        assert_eq!(out, CONF.replace("1003=>9999,", "1003=>0,"));
        let out = rewrite(CONF, "sales", "1002", "77").unwrap();
        assert_eq!(out, CONF.replace("1002 => 5555,", "1002 => 77,"));
        assert_eq!(rewrite(CONF, "default", "1009", "1"), None);
        assert_eq!(rewrite(CONF, "nowhere", "1002", "1"), None);
    }

    #[test]
    fn odd_lines_keep_their_layout() {
        assert_eq!(rewrite("[d]\n1 =>  12  ,A\r\n", "d", "1", "9").unwrap(), "[d]\n1 =>  9  ,A\r\n");
        assert_eq!(rewrite("[d]\n1 => 12\n", "d", "1", "9").unwrap(), "[d]\n1 => 9\n");
        assert_eq!(rewrite("[d]\n1 => ,A\n", "d", "1", "9").unwrap(), "[d]\n1 => 9,A\n");
        assert_eq!(rewrite("[d]\n1 =>\n", "d", "1", "9").unwrap(), "[d]\n1 =>9\n");
        assert_eq!(rewrite("[d]\n1 = 5 ; old\n", "d", "1", "9").unwrap(), "[d]\n1 = 9 ; old\n");
        // In a comment, or in a block comment: not a mailbox line.
        assert_eq!(rewrite("[d]\n;1 => 5\n", "d", "1", "9"), None);
        assert_eq!(rewrite("[d]\n;--\n1 => 5\n--;\n", "d", "1", "9"), None);
        // A template section's name is the part in brackets.
        assert_eq!(rewrite("[d](!)\n1 => 5\n", "d", "1", "9").unwrap(), "[d](!)\n1 => 9\n");
        assert_eq!(rewrite("[d]\n1 => 5", "d", "1", "9").unwrap(), "[d]\n1 => 9");
    }

    #[test]
    fn a_password_written_to_a_file_is_read_back() {
        let dir = std::env::temp_dir().join(format!("vm-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("voicemail.conf");
        std::fs::write(&file, CONF).unwrap();
        write(&file, "default", "1002", "8888").unwrap();
        let config = starling_core::config::Config::load(&file).unwrap();
        let conf = crate::config::VmConf::parse(&config).unwrap();
        assert_eq!(conf.find("1002@default").unwrap().password, "8888");
        assert_eq!(conf.find("1002@sales").unwrap().password, "5555");
        assert!(matches!(write(&file, "default", "1", "1"), Err(WriteError::NotFound(..))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Any text: no panic, and every line but the mailbox's stays byte for byte.
        #[test]
        fn malformed_files_never_panic_and_other_lines_stay(
            lines in proptest::collection::vec("[\\[\\]=>;,\\\\ a-d0-9\\-\r]{0,20}", 0..12),
            password in "[0-9]{0,6}",
        ) {
            let mut text = lines.join("\n");
            text.push_str("\n[ctx]\n1001 => 1,A\n");
            text.push_str(&lines.join("\n"));
            if let Some(out) = rewrite(&text, "ctx", "1001", &password) {
                let before: Vec<&str> = text.split_inclusive('\n').collect();
                let after: Vec<&str> = out.split_inclusive('\n').collect();
                prop_assert_eq!(before.len(), after.len());
                for (b, a) in before.iter().zip(&after) {
                    if b != a {
                        prop_assert!(b.trim_start().to_ascii_lowercase().starts_with("1001"), "{:?} -> {:?}", b, a);
                    }
                }
            }
            let _ = rewrite(&lines.join("\n"), "a", "1", &password);
        }
    }
}
