//! The email that tells a mailbox's owner of a new message (Asterisk's `make_email` and
//! `sendmail`): a MIME message, `multipart/mixed` with the body (`emailbody`, `${VM_*}`
//! substituted) and, with `attach=yes`, the recording as `audio/x-wav` in base64, piped to
//! `mailcmd` (`/usr/sbin/sendmail -t` unless set) through `/bin/sh -c`.

use std::fmt::Write as _;
use std::io::Write as _;

use starling_core::tracing;

/// What the `${VM_*}` variables of the subject and body say (Asterisk's `prep_email_sub_vars`).
#[derive(Clone, Debug, Default)]
pub struct EmailVars {
    /// `VM_NAME`: the mailbox's full name.
    pub name: String,
    /// `VM_MAILBOX`.
    pub mailbox: String,
    /// `VM_CONTEXT`.
    pub context: String,
    /// `VM_MSGNUM`: the message's number from 1.
    pub msgnum: u32,
    /// Seconds (`VM_DUR` is `m:ss`).
    pub duration: u32,
    /// `VM_CALLERID` (`"name" <number>`), `VM_CIDNAME`, `VM_CIDNUM`.
    pub callerid: String,
    pub cidname: String,
    pub cidnum: String,
    /// `VM_DATE`: Asterisk's `emaildateformat` (`%A, %B %d, %Y at %r`).
    pub date: String,
}

impl EmailVars {
    /// `text` with each `${VM_*}` replaced (other text as it is).
    pub fn substitute(&self, text: &str) -> String {
        let duration = format!("{}:{:02}", self.duration / 60, self.duration % 60);
        let msgnum = self.msgnum.to_string();
        let values: [(&str, &str); 9] = [
            ("VM_NAME", &self.name),
            ("VM_MAILBOX", &self.mailbox),
            ("VM_CONTEXT", &self.context),
            ("VM_MSGNUM", &msgnum),
            ("VM_DUR", &duration),
            ("VM_CALLERID", &self.callerid),
            ("VM_CIDNAME", &self.cidname),
            ("VM_CIDNUM", &self.cidnum),
            ("VM_DATE", &self.date),
        ];
        let mut out = text.to_owned();
        for (name, value) in values {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out
    }
}

/// One email to build.
pub struct Email<'a> {
    /// `"The Asterisk PBX" <asterisk@host>`.
    pub from: String,
    /// `"Alice" <alice@example.com>`.
    pub to: String,
    pub subject: String,
    pub body: String,
    /// `(file name, WAV bytes)` with `attach=yes`.
    pub attachment: Option<(String, &'a [u8])>,
    /// Unique per message (the boundary and Message-ID use it).
    pub unique: String,
    /// `X-Asterisk-VM-*` headers.
    pub headers: Vec<(&'static str, String)>,
}

/// RFC 4648 base64 in lines of 76 characters, as MIME wants.
pub fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("\r\n");
    out
}

impl Email<'_> {
    /// The whole message, headers and parts, with CRLF line ends.
    pub fn render(&self, date: &str) -> String {
        let boundary = format!("----voicemail_{}", self.unique);
        let mut out = String::new();
        let _ = write!(out, "Date: {date}\r\nFrom: {}\r\nTo: {}\r\nSubject: {}\r\n", self.from, self.to, self.subject);
        let _ = write!(out, "Message-ID: <Asterisk-{}>\r\n", self.unique);
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
        out.push_str("This is a multi-part message in MIME format.\r\n\r\n");
        let _ = write!(
            out,
            "--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
            self.body.replace("\r\n", "\n").replace('\n', "\r\n")
        );
        if let Some((name, data)) = &self.attachment {
            let _ = write!(
                out,
                "\r\n--{boundary}\r\nContent-Type: audio/x-wav; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Description: Voicemail sound attachment.\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n{}",
                base64_lines(data)
            );
        }
        let _ = write!(out, "\r\n--{boundary}--\r\n");
        out
    }
}

/// Pipes `message` to `mailcmd` on a thread of its own (the call does not wait for it); a
/// failure is logged, as Asterisk's `sendmail` does.
pub fn send(mailcmd: String, message: String, to: String) {
    std::thread::spawn(move || {
        let child = shell(&mailcmd, std::process::Stdio::piped()).spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!("Unable to launch '{mailcmd}' (can't allocate pipe?): {e}");
                return;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            if let Err(e) = stdin.write_all(message.as_bytes()) {
                tracing::warn!("Writing the voicemail email to '{mailcmd}': {e}");
            }
        }
        match child.wait() {
            Ok(status) if status.success() => starling_core::verbose!(1, "Sent mail to {to} with command '{mailcmd}'"),
            Ok(status) => tracing::warn!("'{mailcmd}' failed sending mail to {to}: {status}"),
            Err(e) => tracing::warn!("'{mailcmd}': {e}"),
        }
    });
}

/// `/bin/sh -c command` with its input `stdin` and its output dropped (how Asterisk runs
/// `mailcmd`, `externnotify` and `externpass`).
fn shell(command: &str, stdin: std::process::Stdio) -> std::process::Command {
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c").arg(command).stdin(stdin).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    sh
}

/// Runs `command` and waits for it (Asterisk's `ast_safe_system`): `Err` with why unless it
/// exits 0.
fn run(command: &str) -> Result<(), String> {
    tracing::debug!("Executing {command}");
    match shell(command, std::process::Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("'{command}' failed: {status}")),
        Err(e) => Err(format!("unable to run '{command}': {e}")),
    }
}

/// [`run`] off the channel's task, waited for.
pub async fn run_and_wait(command: String) -> Result<(), String> {
    let shown = command.clone();
    starling_core::tokio::task::spawn_blocking(move || run(&command)).await.map_err(|e| format!("'{shown}': {e}"))?
}

/// [`run`] on a thread of its own, not waited for (Asterisk's `ast_safe_system` with a
/// trailing `&`); a failure is logged.
pub fn run_detached(command: String) {
    std::thread::spawn(move || {
        if let Err(e) = run(&command) {
            tracing::warn!("{e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64_lines(b""), "\r\n");
        assert_eq!(base64_lines(b"f"), "Zg==\r\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\r\n");
        assert_eq!(base64_lines(b"foobar"), "Zm9vYmFy\r\n");
        let long = base64_lines(&[0u8; 120]);
        assert_eq!(long.lines().next().unwrap().len(), 76);
    }

    #[test]
    fn variables_and_parts() {
        let vars = EmailVars {
            name: "Bob".into(),
            mailbox: "1002".into(),
            msgnum: 1,
            duration: 65,
            callerid: "\"Alice\" <1001>".into(),
            ..Default::default()
        };
        assert_eq!(
            vars.substitute("${VM_NAME}: ${VM_MSGNUM} in ${VM_MAILBOX} (${VM_DUR}) from ${VM_CALLERID} ${OTHER}"),
            "Bob: 1 in 1002 (1:05) from \"Alice\" <1001> ${OTHER}"
        );
        let wav = [1u8, 2, 3];
        let email = Email {
            from: "\"PBX\" <asterisk@host>".into(),
            to: "\"Bob\" <bob@example.com>".into(),
            subject: "New".into(),
            body: "line1\nline2".into(),
            attachment: Some(("msg0000.wav".into(), &wav)),
            unique: "x1".into(),
            headers: vec![("X-Asterisk-VM-Message-Num", "1".into())],
        };
        let text = email.render("Mon, 07 Dec 2026 16:00:00 +0000");
        assert!(text.contains("boundary=\"----voicemail_x1\""));
        assert!(text.contains("line1\r\nline2"));
        assert!(text.contains("filename=\"msg0000.wav\"\r\n\r\nAQID\r\n"));
        assert!(text.ends_with("------voicemail_x1--\r\n"));
    }
}
