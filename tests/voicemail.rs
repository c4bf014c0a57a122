//! Issue 26: app_voicemail with real clients. baresip leaves messages (its 440 Hz tone is
//! recorded into Asterisk's spool layout), a SIPp phone with `mailbox=` gets the unsolicited
//! `message-summary` NOTIFYs, SIPp drives VoiceMailMain with RFC 4733 keys, and the email
//! `mailcmd` gets is parsed by python3's `email` module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{dominant_frequency, eventually, run_sipp_with, sip_pbx_with_files, Baresip, Server, SippUas};

const EXTENSIONS: &str = "[default]
exten => 1002,1,VoiceMail(1002@default,us)
 same => n,Hangup()
exten => h,1,NoOp(VMSTATUS=${VMSTATUS})
exten => 1003,1,VoiceMail(1003,s)
 same => n,Hangup()
exten => 500,1,VoiceMailMain(1002@default)
 same => n,Wait(10)
exten => 600,1,NoOp(EXISTS=${MAILBOX_EXISTS(1002)} NONE=${MAILBOX_EXISTS(1009)} COUNT=${VM_INFO(1002,count)} NAME=${VM_INFO(1002@default,fullname)})
 same => n,Hangup()
";

fn sip_conf(uas_port: u16) -> String {
    format!(
        "[alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n\
         [carol]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n\
         [1002]\ntype=peer\nhost=127.0.0.1\nport={uas_port}\ncontext=default\nmailbox=1002@default\n"
    )
}

/// A capture script as `mailcmd`: what it reads goes to `mail.txt` beside it.
/// A `mailcmd` that keeps the email in `dir/mail.txt`, and beside it an `externnotify`
/// (`notify.sh`) that appends its arguments to `dir/notify.txt`.
fn mail_capture(dir: &Path) -> PathBuf {
    let script = dir.join("capture-mail.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat > {}/mail.txt\n", dir.display())).unwrap();
    let notify = dir.join("notify.sh");
    std::fs::write(&notify, format!("#!/bin/sh\necho \"$@\" >> {}/notify.txt\n", dir.display())).unwrap();
    Command::new("chmod").arg("+x").arg(&script).arg(&notify).status().unwrap();
    script
}

fn voicemail_conf(mailcmd: &Path) -> String {
    format!(
        "[general]\nformat=wav\nattach=no\nmaxmsg=10\nmaxsecs=30\nserveremail=vm@example.com\nmailcmd={}\n\
         externnotify={}\nemailsubject=New message ${{VM_MSGNUM}} in ${{VM_MAILBOX}} from ${{VM_CALLERID}}\n\
         [default]\n1002 => 1234,Bob Bobson,bob@example.com,,attach=yes\n1003 => 9999,Carl\n",
        mailcmd.display(),
        mailcmd.with_file_name("notify.sh").display()
    )
}

/// Seconds of a WAV file (python3's wave module).
fn wav_seconds(path: &Path) -> f64 {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import sys,wave\nw=wave.open(sys.argv[1]);print(w.getnframes()/w.getframerate(), w.getframerate(), w.getsampwidth(), w.getnchannels())")
        .arg(path)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.get(1..4), Some(&["8000", "2", "1"][..]), "8 kHz 16-bit mono: {text}");
    fields[0].parse().unwrap()
}

/// The beep's length, as app_voicemail plays it (Debian's prompts).
fn beep_seconds() -> f64 {
    let dir = std::fs::read_dir("/usr/share/asterisk/sounds")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("beep.wav"))
        .find(|p| p.exists())
        .expect("asterisk-core-sounds-en-wav");
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import sys,wave\nw=wave.open(sys.argv[1]);print(w.getnframes()/w.getframerate())")
        .arg(&dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn inbox(server: &Server, mailbox: &str) -> PathBuf {
    server.dir.path.join("spool/voicemail/default").join(mailbox).join("INBOX")
}

/// baresip `name` (a friend with secret pw) calls `exten` with a 440 Hz tone of `tone` seconds.
fn caller(name: &str, user: &str, port: u16, exten: &str, tone: f64) -> Baresip {
    Baresip::spawn_tone(
        name,
        &format!("<sip:{user}@127.0.0.1:{port}>;auth_pass=pw;regint=0"),
        "g711.so",
        8000,
        (440, tone),
        &["-e", &format!("/dial sip:{exten}@127.0.0.1:{port}")],
        (tone as u32) + 8,
        "",
    )
}

/// The NOTIFYs the SIPp phone logged (its `-message_file`), in order.
fn notifies(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("NOTIFY sip:").skip(1).map(|m| m.split("\n\n\n").next().unwrap_or(m).to_owned()).collect()
}

/// The acceptance walk of issue 26: baresip's tone becomes msg0000 (wav + txt), the owner is
/// emailed with the WAV attached, the phone with `mailbox=` is told `yes 1/0`, VoiceMailMain
/// driven by RFC 4733 keys deletes the message, and the phone is told `no`.
#[test]
fn a_message_is_recorded_mailed_notified_and_deleted() {
    let uas_dir = crate::util::TestDir::new("vmuas");
    let messages = uas_dir.path.join("messages.log");
    let phone = SippUas::spawn_with("uas_notify.xml", 2, &["-trace_msg", "-message_file", messages.to_str().unwrap()]);
    let capture_dir = crate::util::TestDir::new("vmmail");
    let mailcmd = mail_capture(&capture_dir.path);
    let (server, port) = sip_pbx_with_files(
        "vmwalk",
        &["pbx_config", "app_voicemail"],
        Some(EXTENSIONS),
        &sip_conf(phone.port),
        &[("voicemail.conf", &voicemail_conf(&mailcmd))],
    );
    // A recorded unavailable greeting of half a second (played instead of the default prompts).
    let greeting_dir = server.dir.path.join("spool/voicemail/default/1002");
    std::fs::create_dir_all(&greeting_dir).unwrap();
    let made = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(greeting_dir.join("unavail.wav"))
        .args(["trim", "0", "0.5"])
        .status()
        .expect("sox");
    assert!(made.success());

    let tone = 5.0;
    let alice = caller("vmalice", "alice", port, "1002", tone);
    let inbox = inbox(&server, "1002");
    let txt = inbox.join("msg0000.txt");
    let written =
        eventually(Duration::from_secs(25), || std::fs::read_to_string(&txt).ok().filter(|t| t.contains("duration=")));
    let log = alice.log();
    drop(alice);
    let info = written.unwrap_or_else(|| panic!("no msg0000.txt\n{log}\n{}", server.log_tail()));
    assert!(info.starts_with(";\n; Message Information file\n;\n[message]\norigmailbox=1002\n"), "{info}");
    assert!(info.contains("\ncallerid=alice\n") || info.contains("<alice>"), "{info}");
    assert!(info.contains("\ncallerchan=SIP/alice-"), "{info}");
    let origdate = info.lines().find_map(|l| l.strip_prefix("origdate=")).unwrap_or("");
    assert!(origdate.ends_with(&format!("UTC {}", starling_year())), "{info}");
    assert!(info.contains("\norigtime=1"), "{info}");

    let wav = inbox.join("msg0000.wav");
    let seconds = wav_seconds(&wav);
    let (_, peak) = dominant_frequency(&wav);
    assert!((435..=445).contains(&peak), "the message is alice's 440 Hz tone: peak at {peak} Hz");
    // The caller spoke (sent the tone) from the answer; the recording starts after the
    // half-second greeting and the beep, and ends when baresip's file ends (its BYE).
    let spoken = tone - 0.5 - beep_seconds();
    assert!((seconds - spoken).abs() <= 0.5, "recorded {seconds:.2} s, spoken after the beep {spoken:.2} s");
    let duration: f64 = info.lines().find_map(|l| l.strip_prefix("duration=")).unwrap().parse().unwrap();
    assert!((duration - seconds).abs() <= 0.5, "duration={duration} for {seconds:.2} s");
    assert!(server.log().contains("VMSTATUS=SUCCESS"), "{}", server.log_tail());

    // The phone with mailbox=1002@default was told (its bodies are read from SIPp's message
    // log once it is done: SIPp writes the log when it exits).
    let sent = eventually(Duration::from_secs(10), || {
        let peer = server.rx("sip show peer 1002");
        peer.contains("  LastMsgsSent : 1/0\n").then_some(peer)
    });
    let peer = sent.unwrap_or_else(|| panic!("no NOTIFY sent\n{}", server.rx("sip show peer 1002")));
    assert!(peer.contains("  Mailbox      : 1002@default\n"), "{peer}");
    assert!(peer.contains("  VM Extension : asterisk\n"), "{peer}");
    let users = server.rx("voicemail show users");
    assert!(users.starts_with("Context    Mbox  User                      Zone       NewMsg\n"), "{users}");
    let row = format!("{:<10} {:<5} {:<25} {:<10} {:>6}\n", "default", "1002", "Bob Bobson", "", 1);
    assert!(users.contains(&row), "{users}");
    assert!(users.contains("2 voicemail users configured."), "{users}");

    // The email: valid MIME, the WAV attached (python3's email module reads it).
    let mail = capture_dir.path.join("mail.txt");
    let mailed = eventually(Duration::from_secs(10), || std::fs::metadata(&mail).ok().filter(|m| m.len() > 1000));
    assert!(mailed.is_some(), "mailcmd got no email\n{}", server.log_tail());
    let parsed = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys,email,io,wave\nm=email.message_from_binary_file(open(sys.argv[1],'rb'))\n\
             assert m.is_multipart(), 'multipart'\nparts=[p for p in m.walk() if not p.is_multipart()]\n\
             text=parts[0].get_payload(decode=True).decode()\natt=[p for p in parts if p.get_filename()]\n\
             w=wave.open(io.BytesIO(att[0].get_payload(decode=True)))\n\
             print(m['To']); print(m['From']); print(m['Subject']); print(att[0].get_content_type(), att[0].get_filename(), w.getframerate(), w.getnframes()); print('Dear Bob Bobson' in text)",
        )
        .arg(&mail)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&parsed.stdout).into_owned();
    assert!(parsed.status.success(), "{report}{}", String::from_utf8_lossy(&parsed.stderr));
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "\"Bob Bobson\" <bob@example.com>");
    assert_eq!(lines[1], "\"The Asterisk PBX\" <vm@example.com>");
    assert!(lines[2].starts_with("New message 1 in 1002 from "), "{report}");
    let frames = (seconds * 8000.0).round() as u64;
    assert_eq!(lines[3], format!("audio/x-wav msg0000.wav 8000 {frames}"), "{report}");
    assert_eq!(lines[4], "True", "the body is emailbody's: {report}");

    // The owner listens and deletes, with RFC 4733 keys; the lamp goes off.
    let (_code, out) = run_sipp_with(port, "invite_vmmain.xml", &["-s", "500", "-m", "1"]);
    let gone = eventually(Duration::from_secs(10), || (!wav.exists() && !txt.exists()).then_some(()));
    assert!(gone.is_some(), "msg0000 was not deleted\n{out}\n{}", server.log_tail());
    assert!(server.log().contains("User '1002@default' logged in"), "{}", server.log_tail());
    let (code, phone_out) = phone.finish();
    let told = notifies(&messages);
    assert_eq!(code, 0, "{phone_out}\n{told:?}\n{}", server.log_tail());
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("Event: message-summary"), "{}", told[0]);
    assert!(told[0].contains("Content-Type: application/simple-message-summary"), "{}", told[0]);
    assert!(told[0].contains("Messages-Waiting: yes"), "{}", told[0]);
    assert!(told[0].contains("Voice-Message: 1/0 (0/0)"), "{}", told[0]);
    assert!(told[0].contains("Message-Account: sip:asterisk@127.0.0.1"), "{}", told[0]);
    assert!(told[1].contains("Messages-Waiting: no"), "{}", told[1]);
    assert!(told[1].contains("Voice-Message: 0/0 (0/0)"), "{}", told[1]);
    assert!(server.rx("sip show peer 1002").contains("  LastMsgsSent : 0/0\n"));

    // externnotify ran with `context mailbox new old urgent` when the message came and after
    // it was deleted.
    let notify = capture_dir.path.join("notify.txt");
    let ran = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&notify).ok().filter(|t| t.lines().last() == Some("default 1002 0 0 0"))
    });
    let ran = ran.unwrap_or_else(|| panic!("externnotify: {:?}", std::fs::read_to_string(&notify)));
    assert_eq!(ran.lines().next(), Some("default 1002 1 0 0"), "{ran}");
}

/// The year now, as origdate ends (`... UTC 2026`).
fn starling_year() -> String {
    let out = Command::new("date").args(["-u", "+%Y"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Two callers leaving messages in one mailbox at the same moment get msg0000 and msg0001.
#[test]
fn two_callers_at_once_get_their_own_numbers() {
    let capture_dir = crate::util::TestDir::new("vmmail2");
    let mailcmd = mail_capture(&capture_dir.path);
    let (server, port) = sip_pbx_with_files(
        "vmtwo",
        &["pbx_config", "app_voicemail"],
        Some(EXTENSIONS),
        &sip_conf(9),
        &[("voicemail.conf", &voicemail_conf(&mailcmd))],
    );
    let alice = caller("vmtwoa", "alice", port, "1003", 3.0);
    let carol = caller("vmtwoc", "carol", port, "1003", 3.0);
    let inbox = inbox(&server, "1003");
    let both = eventually(Duration::from_secs(25), || {
        let done = (0..2).all(|n| {
            std::fs::read_to_string(inbox.join(format!("msg{n:04}.txt"))).is_ok_and(|t| t.contains("duration="))
        });
        done.then_some(())
    });
    let logs = format!("{}\n{}", alice.log(), carol.log());
    drop((alice, carol));
    assert!(both.is_some(), "{:?}\n{logs}\n{}", std::fs::read_dir(&inbox).map(|d| d.count()), server.log_tail());
    let callers: Vec<String> = (0..2)
        .map(|n| {
            let text = std::fs::read_to_string(inbox.join(format!("msg{n:04}.txt"))).unwrap();
            text.lines().find_map(|l| l.strip_prefix("callerchan=")).unwrap_or("").to_owned()
        })
        .collect();
    assert!(callers.iter().any(|c| c.starts_with("SIP/alice-")), "{callers:?}");
    assert!(callers.iter().any(|c| c.starts_with("SIP/carol-")), "{callers:?}");
    for n in 0..2 {
        let (_, peak) = dominant_frequency(&inbox.join(format!("msg{n:04}.wav")));
        assert!((435..=445).contains(&peak), "msg{n:04} is a 440 Hz tone: {peak} Hz");
    }
    assert!(!inbox.join("msg0002.txt").exists());
    let users = server.rx("voicemail show users for default");
    let row = format!("{:<10} {:<5} {:<25} {:<10} {:>6}\n", "default", "1003", "Carl", "", 2);
    assert!(users.contains(&row), "{users}");
    // No email address for 1003: nothing mailed.
    assert!(!capture_dir.path.join("mail.txt").exists());
}

/// `MAILBOX_EXISTS`, `VM_INFO`, and voicemail.conf errors named by file and line.
#[test]
fn functions_and_config_errors() {
    let capture_dir = crate::util::TestDir::new("vmmail3");
    let mailcmd = mail_capture(&capture_dir.path);
    let (server, port) = sip_pbx_with_files(
        "vmfunc",
        &["pbx_config", "app_voicemail"],
        Some(EXTENSIONS),
        &sip_conf(9),
        &[("voicemail.conf", &voicemail_conf(&mailcmd))],
    );
    let (code, out) = run_sipp_with(port, "invite_brief.xml", &["-s", "600", "-m", "1"]);
    let said =
        eventually(Duration::from_secs(10), || server.log().lines().find(|l| l.contains("EXISTS=")).map(str::to_owned));
    let said = said.unwrap_or_else(|| panic!("{code} {out}\n{}", server.log_tail()));
    assert!(said.contains("EXISTS=1 NONE=0 COUNT=0 NAME=Bob Bobson"), "{said}");
    assert!(server.rx("voicemail show zones").contains("There are no voicemail zones currently defined"));

    // A bad line: the reload is refused with voicemail.conf:N, the old mailboxes stay.
    server.dir.write("voicemail.conf", "[general]\nmaxmsg=lots\n[default]\n1002 => 1234,Bob\n");
    let reload = server.rx("voicemail reload");
    assert!(reload.contains("voicemail.conf:2: maxmsg 'lots'"), "{reload}\n{}", server.log_tail());
    assert!(server.rx("voicemail show users").contains("2 voicemail users configured."));
    server.dir.write("voicemail.conf", "[default]\n1002 => 1234,Bob\n");
    server.rx("voicemail reload");
    assert!(server.rx("voicemail show users").contains("1 voicemail users configured."));
}

/// A phone that SUBSCRIBEs to `message-summary` (RFC 3842) gets its mailbox's counts in the
/// subscription's NOTIFYs: 1 new message at once (a message already in the spool when
/// Starling started), then none once the mailbox is emptied (`voicemail reload` recounts).
#[test]
fn a_message_summary_subscription_is_told_the_counts() {
    let capture_dir = crate::util::TestDir::new("vmmail4");
    let mailcmd = mail_capture(&capture_dir.path);
    let dir = crate::util::TestDir::new("vmsubs");
    // One message in 1002's INBOX before Starling starts.
    let inbox_dir = dir.path.join("spool/voicemail/default/1002/INBOX");
    std::fs::create_dir_all(&inbox_dir).unwrap();
    std::fs::write(inbox_dir.join("msg0000.txt"), ";\n; Message Information file\n;\n[message]\nduration=1\n").unwrap();
    let made = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(inbox_dir.join("msg0000.wav"))
        .args(["synth", "1", "sine", "440"])
        .status()
        .expect("sox");
    assert!(made.success());
    let port = crate::util::free_udp_port();
    dir.write_starling_conf(&crate::util::moddir(), "");
    dir.write(
        "modules.conf",
        "[modules]\nautoload = no\nload => pbx_config.so\nload => app_voicemail.so\nload => res_manager.so\nload => chan_sip.so\n",
    );
    let ami_port = crate::util::free_udp_port();
    dir.write(
        "manager.conf",
        &format!("[general]\nenabled=yes\nport={ami_port}\nbindaddr=127.0.0.1\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n"),
    );
    dir.write("extensions.conf", EXTENSIONS);
    dir.write("voicemail.conf", &voicemail_conf(&mailcmd));
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\n[bob]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\nmailbox=1002\n\
             [dave]\ntype=peer\nhost=dynamic\ncontext=default\nmailbox=1002@default\n\
             [carol]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n"
        ),
    );
    let server = Server::start(dir);
    let target = format!("127.0.0.1:{port}");
    let phone = std::thread::spawn(move || {
        let auth_uri = format!("bob@{target}");
        crate::util::sipp_bounded(
            &target,
            "127.0.0.1",
            crate::util::free_udp_port(),
            "subscribe_mwi.xml",
            &["-s", "bob", "-au", "bob", "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"],
            Duration::from_secs(40),
        )
    });
    let row = eventually(Duration::from_secs(15), || {
        let rows = server.rx("sip show subscriptions");
        rows.contains(" mwi ").then_some(rows)
    });
    let row = row.unwrap_or_else(|| panic!("no MWI subscription\n{}", server.log_tail()));
    assert!(row.contains("bob") && row.contains("1002"), "{row}");
    assert!(server.rx("sip show peer bob").contains("  LastMsgsSent : 1/0\n"));
    // The manager counts the same (app_voicemail's MailboxCount and MailboxStatus).
    let mut ami = crate::manager::Ami::login(ami_port, "admin", "s3cret");
    let count = |ami: &mut crate::manager::Ami, id: &str| {
        ami.send(&[("Action", "MailboxCount"), ("Mailbox", "1002@default"), ("ActionID", id)]);
        let reply = ami.until("ActionID", id, Duration::from_secs(10));
        let get = |k| crate::manager::get(&reply, k).map(str::to_owned);
        (get("Response"), get("NewMessages"), get("OldMessages"))
    };
    let ok = Some("Success".to_owned());
    assert_eq!(count(&mut ami, "c1"), (ok.clone(), Some("1".into()), Some("0".into())));
    ami.send(&[("Action", "MailboxStatus"), ("Mailbox", "1002@default"), ("ActionID", "s1")]);
    let status = ami.until("ActionID", "s1", Duration::from_secs(10));
    assert_eq!(crate::manager::get(&status, "Waiting"), Some("1"), "{status:?}");
    // A phone that registers (dave, with mailbox= and no subscription) is told after its 200.
    let phone_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone_socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = phone_socket.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKvmreg1;rport\r\n\
         From: <sip:dave@127.0.0.1>;tag=r1\r\nTo: <sip:dave@127.0.0.1>\r\nCall-ID: vm-register-1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:dave@{local}>\r\nMax-Forwards: 70\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
    );
    phone_socket.send_to(register.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = phone_socket.recv(&mut buffer) {
        received.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        if received.iter().any(|m| m.starts_with("NOTIFY ")) {
            break;
        }
    }
    assert!(received.first().is_some_and(|m| m.starts_with("SIP/2.0 200")), "{received:?}");
    let notify = received.iter().find(|m| m.starts_with("NOTIFY sip:dave@")).unwrap_or_else(|| panic!("{received:?}"));
    assert!(notify.contains("Event: message-summary") && notify.contains("Messages-Waiting: yes"), "{notify}");
    assert!(notify.contains("Voice-Message: 1/0 (0/0)"), "{notify}");
    assert!(!notify.contains("Subscription-State"), "unsolicited: {notify}");
    // Carol has no mailbox: 404 (chan_sip's "Not found (no mailbox)").
    let auth_uri = format!("carol@127.0.0.1:{port}");
    let args = ["-s", "carol", "-key", "user", "carol", "-au", "carol", "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"];
    let (code, out) = crate::util::run_sipp_with(port, "subscribe_mwi_404.xml", &args);
    assert_eq!(code, 0, "{out}");
    std::fs::remove_file(inbox_dir.join("msg0000.txt")).unwrap();
    std::fs::remove_file(inbox_dir.join("msg0000.wav")).unwrap();
    server.rx("voicemail reload");
    let event = ami.until("Event", "MessageWaiting", Duration::from_secs(10));
    assert_eq!(crate::manager::get(&event, "Mailbox"), Some("1002@default"), "{event:?}");
    assert_eq!((crate::manager::get(&event, "Waiting"), crate::manager::get(&event, "New")), (Some("0"), Some("0")));
    assert_eq!(count(&mut ami, "c2"), (ok, Some("0".into()), Some("0".into())));
    let (code, out) = phone.join().unwrap();
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.rx("sip show peer bob").contains("  LastMsgsSent : 0/0\n"));
}

/// A baresip that calls `exten` sending a `tone` (Hz) for up to `seconds`, and presses keys
/// when told (RFC 4733, through its ctrl_tcp module's `sndcode` command).
struct KeyPhone {
    baresip: Baresip,
    ctrl: std::net::TcpStream,
}

impl KeyPhone {
    fn call(name: &str, user: &str, port: u16, exten: &str, tone: u32, seconds: u32) -> KeyPhone {
        let ctrl_port = crate::util::free_udp_port();
        let baresip = Baresip::spawn_tone(
            name,
            &format!("<sip:{user}@127.0.0.1:{port}>;auth_pass=pw;regint=0"),
            "g711.so",
            8000,
            (tone, f64::from(seconds)),
            &["-e", &format!("/dial sip:{exten}@127.0.0.1:{port}")],
            seconds + 5,
            &format!("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\n"),
        );
        let ctrl = eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", ctrl_port)).ok())
            .unwrap_or_else(|| panic!("baresip's ctrl_tcp did not listen\n{}", baresip.log()));
        ctrl.set_nonblocking(true).unwrap();
        KeyPhone { baresip, ctrl }
    }

    fn command(&mut self, command: &str, params: &str) {
        use std::io::{Read, Write};
        let json = format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t\"}}");
        self.ctrl.write_all(format!("{}:{json},", json.len()).as_bytes()).unwrap();
        // Its answers and events are not needed: drained so its buffer never fills.
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.ctrl.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    /// Presses each key in turn, a quarter of a second apart.
    fn keys(&mut self, keys: &str) {
        for key in keys.chars() {
            self.command("sndcode", &key.to_string());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn hangup(mut self) -> Baresip {
        self.command("hangup", "");
        std::thread::sleep(Duration::from_millis(300));
        self.baresip
    }
}

/// Follows Starling's log in order: each expectation is looked for after the previous one.
struct LogCursor<'a> {
    server: &'a Server,
    at: usize,
}

impl<'a> LogCursor<'a> {
    fn new(server: &'a Server) -> LogCursor<'a> {
        LogCursor { server, at: server.log().len() }
    }

    /// Waits (up to 20 s) for `needle` after the cursor and moves past it.
    fn expect(&mut self, needle: &str) {
        let at = self.at;
        let found = eventually(Duration::from_secs(20), || {
            let log = self.server.log();
            log.get(at..).and_then(|rest| rest.find(needle)).map(|i| at + i + needle.len())
        });
        self.at = found.unwrap_or_else(|| {
            let log = self.server.log();
            panic!("'{needle}' never came in the log after:\n{}", log.get(at..).unwrap_or(""))
        });
    }
}

const MENU_EXTENSIONS: &str = "[default]
exten => 500,1,VoiceMailMain(1002@default)
 same => n,Hangup()
exten => 1002,1,VoiceMail(1002@default,us)
 same => n,Hangup()
exten => 1003,1,VoiceMail(1003@default,u)
 same => n,NoOp(LEFT VMSTATUS=${VMSTATUS})
 same => n,Hangup()
exten => o,1,NoOp(OPERATOR VMSTATUS=${VMSTATUS})
 same => n,Hangup()
exten => a,1,NoOp(ATTENDANT VMSTATUS=${VMSTATUS})
 same => n,Hangup()
";

const MENU_CONF: &str = "; voicemail.conf, edited by hand\n[general]\nformat=wav ; wav only\nmaxmsg=10\noperator=yes\n\
                         mailcmd=/bin/true\n\n; the boxes\n[default]\n1002 => 1234,Bob Bobson,,,tz=central ; Bob's box\n\
                         1003 => 9999,Carl,,,review=yes\n";

/// Starling with MENU_EXTENSIONS (or `extensions`) and `voicemail` as voicemail.conf.
fn menu_pbx(name: &str, extensions: Option<&str>, voicemail: &str) -> (Server, u16) {
    sip_pbx_with_files(
        name,
        &["pbx_config", "app_voicemail"],
        Some(extensions.unwrap_or(MENU_EXTENSIONS)),
        &sip_conf(9),
        &[("voicemail.conf", voicemail)],
    )
}

/// The owner changes the password through 0-5 (`4321` twice); then `#` and hangs up.
fn change_password_to_4321(log: &mut LogCursor, port: u16, name: &str) {
    let mut owner = KeyPhone::call(name, "alice", port, "500", 440, 40);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("User '1002@default' logged in");
    owner.keys("0");
    log.expect("vm-options.wav'");
    owner.keys("5");
    log.expect("vm-newpassword.wav'");
    owner.keys("4321#");
    log.expect("vm-reenterpassword.wav'");
    owner.keys("4321#");
    log.expect("vm-passchanged.wav'");
    owner.keys("*");
    log.expect("vm-opts.wav'");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
}

/// `passwordlocation=spooldir`: a changed password goes to the mailbox's `secret.conf`, not
/// voicemail.conf, and `externpassnotify` hears `context mailbox password`; after `voicemail
/// reload` (secret.conf read again) the new password logs in. With `externpass` the program
/// changes it (here: records its arguments and exits 0) and voicemail.conf is left alone.
#[test]
fn passwords_kept_in_the_spool_or_changed_by_externpass() {
    let dir = crate::util::TestDir::new("vmpwd");
    let record = |name: &str| {
        let script = dir.path.join(format!("{name}.sh"));
        std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}/{name}.txt\n", dir.path.display())).unwrap();
        Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        script
    };
    let notify = record("notify");
    let conf =
        MENU_CONF.replace("operator=yes", &format!("passwordlocation=spooldir\nexternpassnotify={}", notify.display()));
    let (server, port) = menu_pbx("vmspoolpw", None, &conf);
    let mut log = LogCursor::new(&server);
    change_password_to_4321(&mut log, port, "vmspoolpwa");
    let secret = server.dir.path.join("spool/voicemail/default/1002/secret.conf");
    assert_eq!(std::fs::read_to_string(&secret).unwrap_or_default(), "[general]\npassword=4321\n");
    assert_eq!(
        std::fs::read_to_string(server.dir.etc().join("voicemail.conf")).unwrap(),
        conf,
        "voicemail.conf untouched"
    );
    let told = eventually(Duration::from_secs(5), || std::fs::read_to_string(dir.path.join("notify.txt")).ok());
    assert_eq!(told.as_deref(), Some("default 1002 4321\n"));
    server.rx("voicemail reload");
    let mut owner = KeyPhone::call("vmspoolpwb", "alice", port, "500", 440, 30);
    log.expect("vm-password.wav'");
    owner.keys("4321#");
    log.expect("User '1002@default' logged in");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
    drop(server);

    let externpass = record("externpass");
    let conf = MENU_CONF.replace("operator=yes", &format!("externpass={}", externpass.display()));
    let (server, port) = menu_pbx("vmextpw", None, &conf);
    let mut log = LogCursor::new(&server);
    change_password_to_4321(&mut log, port, "vmextpwa");
    assert_eq!(std::fs::read_to_string(dir.path.join("externpass.txt")).unwrap_or_default(), "default 1002 4321\n");
    assert_eq!(
        std::fs::read_to_string(server.dir.etc().join("voicemail.conf")).unwrap(),
        conf,
        "voicemail.conf untouched"
    );
    assert!(!server.dir.path.join("spool/voicemail/default/1002/secret.conf").exists());
    // In force at once (the program said yes).
    let mut owner = KeyPhone::call("vmextpwb", "alice", port, "500", 440, 30);
    log.expect("vm-password.wav'");
    owner.keys("4321#");
    log.expect("User '1002@default' logged in");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
}

/// The owner records an unavailable greeting through 0-1 (baresip's 440 Hz tone, kept with 1
/// after `vm-review`), changes the password through 0-5 (twice, `vm-passchanged`): the
/// password is written into voicemail.conf (only that line changes) and the new one logs in,
/// also after `voicemail reload`. A caller of VoiceMail(u) then hears the greeting.
#[test]
fn greeting_and_password_through_the_mailbox_options() {
    let (server, port) = menu_pbx("vmopts", None, MENU_CONF);
    let mut log = LogCursor::new(&server);
    let mut owner = KeyPhone::call("vmoptsa", "alice", port, "500", 440, 60);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("User '1002@default' logged in");
    owner.keys("0");
    log.expect("vm-options.wav'");
    owner.keys("1");
    log.expect("vm-rec-unv.wav'");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(3));
    owner.keys("#");
    log.expect("vm-review.wav'");
    owner.keys("1");
    log.expect("vm-msgsaved.wav'");
    log.expect("vm-options.wav'");
    owner.keys("5");
    log.expect("vm-newpassword.wav'");
    owner.keys("4321#");
    log.expect("vm-reenterpassword.wav'");
    owner.keys("4321#");
    log.expect("vm-passchanged.wav'");
    owner.keys("*");
    log.expect("vm-opts.wav'");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());

    let greeting = server.dir.path.join("spool/voicemail/default/1002/unavail.wav");
    let seconds = wav_seconds(&greeting);
    assert!((2.0..=4.0).contains(&seconds), "the greeting is {seconds:.2} s");
    let (_, peak) = dominant_frequency(&greeting);
    assert!((435..=445).contains(&peak), "the greeting is the owner's 440 Hz tone: {peak} Hz");
    assert!(!server.dir.path.join("spool/voicemail/default/1002/unavail.tmp.wav").exists());

    let conf = std::fs::read_to_string(server.dir.etc().join("voicemail.conf")).unwrap();
    assert_eq!(conf, MENU_CONF.replace("1002 => 1234,", "1002 => 4321,"), "only the password changed");

    // The new password logs in, also once the file is read again.
    server.rx("voicemail reload");
    let mut owner = KeyPhone::call("vmoptsb", "alice", port, "500", 440, 30);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("Incorrect password '1234'");
    log.expect("vm-password.wav'");
    owner.keys("4321#");
    log.expect("User '1002@default' logged in");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());

    // A caller of VoiceMail(1002,us) hears the recorded greeting (then the beep).
    let caller = KeyPhone::call("vmoptsc", "carol", port, "1002", 880, 4);
    log.expect("/1002/unavail.wav'");
    let (samples, peak, blog) = caller.baresip.heard();
    assert!(samples > 8000, "heard {samples} samples\n{blog}");
    assert!((430..=450).contains(&peak), "the caller heard the 440 Hz greeting: {peak} Hz\n{blog}");
}

/// A message of `seconds` of `hz` in `folder` as `msgNNNN` (sox), left by `callerid`.
fn spool_message(folder: &Path, number: u32, hz: u32, callerid: &str) {
    std::fs::create_dir_all(folder).unwrap();
    let base = folder.join(format!("msg{number:04}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(
        base.with_extension("txt"),
        format!(";\n; Message Information file\n;\n[message]\norigmailbox=1002\ncontext=default\ncallerid={callerid}\norigtime={now}\nduration=2\n"),
    )
    .unwrap();
    let made = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(base.with_extension("wav"))
        .args(["synth", "2", "sine", &hz.to_string()])
        .status()
        .expect("sox");
    assert!(made.success());
}

/// `path` is a tone of `hz` (FFT peak within 5 Hz).
fn assert_tone(path: &Path, hz: u64) {
    let peak = dominant_frequency(path).1;
    assert!(peak.abs_diff(hz) <= 5, "{}: a {hz} Hz tone expected, peak at {peak} Hz", path.display());
}

/// VoiceMailMain with RFC 4733 keys from baresip: `9 2` saves the first message to Work, `9 1`
/// the second to Old, `8 1003# 1 (recording) # 2` forwards the third to 1003 with a recording
/// before it (its INBOX gets it as msg0000, its phone an MWI NOTIFY, Carl an email, the
/// manager's count 1). The envelope (`vm-received`, and with
/// saycid `vm-from-phonenumber`) is said before each message. On leaving, INBOX is empty, Work
/// holds the first, Old the second and the (heard) third, in order and without gaps.
#[test]
fn messages_are_saved_to_folders_and_forwarded() {
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let phone_port = phone.local_addr().unwrap().port();
    let ami_port = crate::util::free_udp_port();
    let manager = format!(
        "[general]\nenabled=yes\nport={ami_port}\nbindaddr=127.0.0.1\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n"
    );
    let capture_dir = crate::util::TestDir::new("vmfoldmail");
    let mailcmd = mail_capture(&capture_dir.path);
    let conf = MENU_CONF
        .replace("operator=yes", "operator=yes\nsaycid=yes")
        .replace("mailcmd=/bin/true", &format!("mailcmd={}", mailcmd.display()))
        .replace("1003 => 9999,Carl,,,", "1003 => 9999,Carl,carl@example.com,,attach=yes|");
    let sip = format!(
        "[alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n\
         [1003]\ntype=peer\nhost=127.0.0.1\nport={phone_port}\ncontext=default\nmailbox=1003@default\n"
    );
    let (server, port) = sip_pbx_with_files(
        "vmfold",
        &["pbx_config", "app_voicemail", "res_manager"],
        Some(MENU_EXTENSIONS),
        &sip,
        &[("voicemail.conf", &conf), ("manager.conf", &manager)],
    );
    let inbox = server.dir.path.join("spool/voicemail/default/1002/INBOX");
    spool_message(&inbox, 0, 300, "\"Dave\" <5551234>");
    spool_message(&inbox, 1, 500, "5551234");
    spool_message(&inbox, 2, 700, "Unknown");

    let mut log = LogCursor::new(&server);
    let mut owner = KeyPhone::call("vmfolda", "alice", port, "500", 440, 90);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("User '1002@default' logged in");
    owner.keys("1");
    log.expect("vm-first.wav'");
    log.expect("vm-received.wav'");
    log.expect("vm-from-phonenumber.wav'");
    log.expect("/INBOX/msg0000.wav'");
    owner.keys("9");
    log.expect("vm-savefolder.wav'");
    owner.keys("2");
    log.expect("vm-savedto.wav'");
    log.expect("vm-Work.wav'");
    owner.keys("6");
    log.expect("/INBOX/msg0001.wav'");
    owner.keys("9");
    log.expect("vm-savefolder.wav'");
    owner.keys("1");
    log.expect("vm-savedto.wav'");
    log.expect("vm-Old.wav'");
    owner.keys("6");
    log.expect("vm-last.wav'");
    log.expect("vm-unknown-caller.wav'");
    log.expect("/INBOX/msg0002.wav'");
    owner.keys("8");
    log.expect("vm-extension.wav'");
    owner.keys("1003#");
    log.expect("vm-forwardoptions.wav'");
    // 1: a recording (the owner's 440 Hz tone) goes before the forwarded copy.
    owner.keys("1");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(2));
    owner.keys("#");
    log.expect("to prepend");
    log.expect("vm-forwardoptions.wav'");
    owner.keys("2");
    log.expect("vm-msgforwarded.wav'");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());

    let boxes = server.dir.path.join("spool/voicemail/default");
    let closed = eventually(Duration::from_secs(10), || (spool_count(&boxes.join("1002/INBOX")) == 0).then_some(()));
    assert!(closed.is_some(), "INBOX was not emptied\n{}", server.log_tail());
    assert_eq!(spool_count(&boxes.join("1002/Work")), 1);
    assert_eq!(spool_count(&boxes.join("1002/Old")), 2);
    assert_tone(&boxes.join("1002/Work/msg0000.wav"), 300);
    assert_tone(&boxes.join("1002/Old/msg0000.wav"), 500);
    assert_tone(&boxes.join("1002/Old/msg0001.wav"), 700);
    // The copy is the prepended recording, then the whole message (sample for sample); the
    // owner's own message (now Old/msg0001) is untouched.
    let copy = boxes.join("1003/INBOX/msg0000.wav");
    let seconds = wav_seconds(&copy);
    assert!((3.0..=5.0).contains(&seconds), "2 s prepended to the 2 s message: {seconds:.2} s");
    assert!((wav_seconds(&boxes.join("1002/Old/msg0001.wav")) - 2.0).abs() < 0.01);
    let tail = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys,wave\na=wave.open(sys.argv[1]);b=wave.open(sys.argv[2])\n\
             fa=a.readframes(a.getnframes());fb=b.readframes(b.getnframes())\nprint(fa.endswith(fb), len(fa)-len(fb))",
        )
        .arg(&copy)
        .arg(boxes.join("1002/Old/msg0001.wav"))
        .output()
        .unwrap();
    let tail = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert!(tail.starts_with("True "), "the copy ends with the message: {tail}");
    let forwarded = std::fs::read_to_string(boxes.join("1003/INBOX/msg0000.txt")).unwrap();
    assert!(forwarded.contains("callerid=Unknown"), "{forwarded}");
    let duration: u32 = forwarded.lines().find_map(|l| l.strip_prefix("duration=")).unwrap().parse().unwrap();
    assert!((3..=5).contains(&duration), "{forwarded}");

    // 1003's phone is told, and the manager counts it.
    let mut told = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 4096];
    while told.is_none() && std::time::Instant::now() < deadline {
        if let Ok(n) = phone.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if text.starts_with("NOTIFY ") && text.contains("Voice-Message: 1/0") {
                told = Some(text);
            }
        }
    }
    let told = told.unwrap_or_else(|| panic!("1003's phone got no NOTIFY\n{}", server.log_tail()));
    assert!(told.contains("Messages-Waiting: yes"), "{told}");
    // Carl is emailed about the forwarded message, with it attached.
    let mail = capture_dir.path.join("mail.txt");
    let mailed = eventually(Duration::from_secs(10), || std::fs::read_to_string(&mail).ok().filter(|m| m.len() > 1000));
    let mailed = mailed.unwrap_or_else(|| panic!("no email for the forward\n{}", server.log_tail()));
    assert!(mailed.contains("To: \"Carl\" <carl@example.com>"), "{mailed}");
    assert!(mailed.contains("filename=\"msg0000.wav\""), "{}", &mailed[..mailed.len().min(2000)]);
    let mut ami = crate::manager::Ami::login(ami_port, "admin", "s3cret");
    for (mailbox, new, old) in [("1003@default", "1", "0"), ("1002@default", "0", "2")] {
        ami.send(&[("Action", "MailboxCount"), ("Mailbox", mailbox), ("ActionID", mailbox)]);
        let reply = ami.until("ActionID", mailbox, Duration::from_secs(10));
        assert_eq!(crate::manager::get(&reply, "NewMessages"), Some(new), "{mailbox}: {reply:?}");
        assert_eq!(crate::manager::get(&reply, "OldMessages"), Some(old), "{mailbox}: {reply:?}");
    }
}

fn spool_count(folder: &Path) -> usize {
    std::fs::read_dir(folder)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".txt")).count())
        .unwrap_or(0)
}

/// `0` during VoiceMail()'s greeting (operator=yes) goes to the `o` extension after
/// `transfer`, `*` to the `a` extension; VMSTATUS is USEREXIT and nothing is recorded. With
/// `review=yes` the caller records, hears `vm-review`, records again with 3, listens with 2
/// and keeps the second recording with 1; `0` during a recording asks `vm-saveoper` and goes
/// to `o` with the message kept.
#[test]
fn zero_and_star_leave_voicemail_for_o_and_a_and_review_records_again() {
    let (server, port) = menu_pbx("vmoper", None, MENU_CONF);
    let mut log = LogCursor::new(&server);
    let mut caller = KeyPhone::call("vmopera", "carol", port, "1003", 440, 30);
    log.expect("vm-theperson.wav'");
    caller.keys("0");
    log.expect("transfer.wav'");
    log.expect("OPERATOR VMSTATUS=USEREXIT");
    drop(caller.hangup());
    let mut caller = KeyPhone::call("vmoperb", "carol", port, "1003", 440, 30);
    log.expect("vm-theperson.wav'");
    caller.keys("*");
    log.expect("ATTENDANT VMSTATUS=USEREXIT");
    drop(caller.hangup());
    let inbox = server.dir.path.join("spool/voicemail/default/1003/INBOX");
    assert_eq!(spool_count(&inbox), 0);
    assert!(!server.log().contains("LEFT VMSTATUS"), "{}", server.log_tail());

    let mut caller = KeyPhone::call("vmoperc", "carol", port, "1003", 880, 60);
    log.expect("vm-intro.wav'");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(1));
    caller.keys("#");
    log.expect("vm-review.wav'");
    caller.keys("3");
    log.expect("Re-recording the message");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(3));
    caller.keys("#");
    log.expect("vm-review.wav'");
    caller.keys("2");
    log.expect("Reviewing the message");
    caller.keys("1");
    log.expect("vm-msgsaved.wav'");
    log.expect("LEFT VMSTATUS=SUCCESS");
    drop(caller.hangup());
    assert_eq!(spool_count(&inbox), 1);

    // 0 during the recording (operator=yes): vm-saveoper, 1 keeps it, then the operator.
    let mut caller = KeyPhone::call("vmoperd", "carol", port, "1003", 440, 60);
    log.expect("vm-intro.wav'");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(2));
    caller.keys("0");
    log.expect("vm-saveoper.wav'");
    caller.keys("1");
    log.expect("vm-msgsaved.wav'");
    log.expect("transfer.wav'");
    log.expect("OPERATOR VMSTATUS=USEREXIT");
    drop(caller.hangup());
    assert_eq!(spool_count(&inbox), 2);
    assert_tone(&inbox.join("msg0001.wav"), 440);

    let wav = inbox.join("msg0000.wav");
    let seconds = wav_seconds(&wav);
    assert!((2.3..=4.0).contains(&seconds), "the second recording (3 s, not the first 1 s) was kept: {seconds:.2} s");
    assert_tone(&wav, 880);
}

/// While a message plays, `#` skips forward and `*` back by `skipms` (3 s here): a 10 s
/// message skipped twice ends about 6 s early, one rewound once about 3 s late (measured from
/// the log, which follows real-time playback).
#[test]
fn skipms_skips_and_rewinds_within_a_message() {
    let conf = MENU_CONF.replace("operator=yes", "skipms=3000\nenvelope=no");
    let (server, port) = menu_pbx("vmskip", None, &conf);
    let inbox = server.dir.path.join("spool/voicemail/default/1002/INBOX");
    for number in 0..2 {
        spool_message(&inbox, number, 400, "Unknown");
        let made = Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(inbox.join(format!("msg{number:04}.wav")))
            .args(["synth", "10", "sine", "400"])
            .status()
            .expect("sox");
        assert!(made.success());
    }
    let mut log = LogCursor::new(&server);
    let mut owner = KeyPhone::call("vmskipa", "alice", port, "500", 440, 90);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("User '1002@default' logged in");
    owner.keys("1");
    log.expect("/INBOX/msg0000.wav'");
    let started = std::time::Instant::now();
    owner.keys("##");
    log.expect("vm-advopts.wav'");
    let skipped = started.elapsed();
    owner.keys("6");
    log.expect("/INBOX/msg0001.wav'");
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    owner.keys("*");
    log.expect("vm-prev.wav'");
    let rewound = started.elapsed();
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
    assert!(skipped < Duration::from_millis(5500), "10 s less twice 3 s took {skipped:?}");
    assert!(skipped > Duration::from_millis(3000), "10 s less twice 3 s took {skipped:?}");
    assert!(rewound > Duration::from_millis(12000), "10 s and 3 s again took {rewound:?}");
    assert!(rewound < Duration::from_millis(14500), "10 s and 3 s again took {rewound:?}");
}

/// Advanced options (`3`) while listening: `3` says the envelope (when and who: `vm-received`,
/// `vm-from-phonenumber`), `1` replies into the caller's mailbox (1003 here: `vm-intro`, the
/// beep, the owner's 440 Hz tone, then 1003's review=yes asks and 1 keeps it).
#[test]
fn advanced_options_say_the_envelope_and_reply() {
    let conf = MENU_CONF.replace("operator=yes", "envelope=no");
    let (server, port) = menu_pbx("vmadv", None, &conf);
    let inbox = server.dir.path.join("spool/voicemail/default/1002/INBOX");
    spool_message(&inbox, 0, 300, "\"Carl\" <1003>");
    let mut log = LogCursor::new(&server);
    let mut owner = KeyPhone::call("vmadva", "alice", port, "500", 440, 90);
    log.expect("vm-password.wav'");
    owner.keys("1234#");
    log.expect("User '1002@default' logged in");
    owner.keys("1");
    log.expect("/INBOX/msg0000.wav'");
    owner.keys("3");
    log.expect("vm-toreply.wav'");
    owner.keys("3");
    log.expect("vm-received.wav'");
    log.expect("vm-from-phonenumber.wav'");
    log.expect("digits/3.wav'");
    log.expect("vm-advopts.wav'");
    owner.keys("3");
    log.expect("vm-toreply.wav'");
    owner.keys("1");
    log.expect("Leaving voicemail for '1003'");
    log.expect("vm-intro.wav'");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(2));
    owner.keys("#");
    log.expect("vm-review.wav'");
    owner.keys("1");
    log.expect("vm-msgsaved.wav'");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
    let carl = server.dir.path.join("spool/voicemail/default/1003/INBOX");
    assert_eq!(spool_count(&carl), 1);
    assert_tone(&carl.join("msg0000.wav"), 440);
    let info = std::fs::read_to_string(carl.join("msg0000.txt")).unwrap();
    assert!(info.contains("\ncallerchan=SIP/alice-"), "{info}");
}

/// A new user (password = mailbox number, `forcename=yes`): at the first login `vm-newuser`,
/// the name is recorded (`greet.wav`, kept with 1), then a new password (twice) is written to
/// voicemail.conf before the usual menu.
#[test]
fn a_new_user_records_a_name_and_sets_a_password() {
    let conf = MENU_CONF.replace("operator=yes", "forcename=yes") + "1004 => 1004,New User\n";
    let extensions = MENU_EXTENSIONS.to_owned() + "exten => 501,1,VoiceMailMain(1004@default)\n same => n,Hangup()\n";
    let (server, port) = menu_pbx("vmnew", Some(&extensions), &conf);
    let mut log = LogCursor::new(&server);
    let mut owner = KeyPhone::call("vmnewa", "alice", port, "501", 440, 90);
    log.expect("vm-password.wav'");
    owner.keys("1004#");
    log.expect("User '1004@default' logged in");
    log.expect("vm-newuser.wav'");
    log.expect("vm-rec-name.wav'");
    log.expect("beep.wav'");
    std::thread::sleep(Duration::from_secs(2));
    owner.keys("#");
    log.expect("vm-review.wav'");
    owner.keys("1");
    log.expect("vm-msgsaved.wav'");
    log.expect("vm-newpassword.wav'");
    owner.keys("5678#");
    log.expect("vm-reenterpassword.wav'");
    owner.keys("5678#");
    log.expect("vm-passchanged.wav'");
    log.expect("vm-youhave.wav'");
    owner.keys("#");
    log.expect("vm-goodbye.wav'");
    drop(owner.hangup());
    let name = server.dir.path.join("spool/voicemail/default/1004/greet.wav");
    assert_tone(&name, 440);
    let written = std::fs::read_to_string(server.dir.etc().join("voicemail.conf")).unwrap();
    assert_eq!(written, conf.replace("1004 => 1004,", "1004 => 5678,"));
}
