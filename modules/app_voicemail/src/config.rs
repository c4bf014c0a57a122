//! `voicemail.conf`, as Asterisk's app_voicemail reads it: `[general]` (the options below),
//! `[zonemessages]` (the envelope's formats) and every other section a context of
//! mailboxes, one a line: `1001 => 4242,Alice,alice@example.com,pager@example.com,attach=yes|tz=central`
//! (password, full name, email, pager email, then options split on `|` or `,`).
//! A bad value is an error naming `voicemail.conf:LINE`; every error is reported at once, and a
//! reload that finds one keeps the configuration in force.

use starling_core::config::{Config, ConfigError, ConfigErrors, Variable};
use starling_core::tracing;

pub const CONFIG: &str = "voicemail.conf";

/// Asterisk's default `emailsubject` (with `${VM_*}` substituted).
pub const DEFAULT_SUBJECT: &str = "[PBX]: New message ${VM_MSGNUM} in mailbox ${VM_MAILBOX}";
/// Asterisk's default `emailbody`.
pub const DEFAULT_BODY: &str = "Dear ${VM_NAME}:\n\n\tjust wanted to let you know you were just left a ${VM_DUR} long message (number ${VM_MSGNUM})\nin mailbox ${VM_MAILBOX} from ${VM_CALLERID}, on ${VM_DATE}, so you might\nwant to check it when you get a chance.  Thanks!\n\n\t\t\t\t--Asterisk\n";

/// `[general]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct General {
    /// `format`: only `wav` (8 kHz 16-bit PCM) is written; `wav49` and `gsm` have no codec here.
    pub format: String,
    /// `maxmsg`: messages a folder may hold (Asterisk's default 100).
    pub maxmsg: u32,
    /// `maxsecs` (or Asterisk's older `maxmessage`): the longest message, 0 = no limit.
    pub maxsecs: u32,
    /// `minsecs` (`minmessage`): shorter messages are thrown away.
    pub minsecs: u32,
    /// `maxsilence`: seconds of silence that end a recording, 0 = never.
    pub maxsilence: u32,
    /// `silencethreshold`: mean amplitude below which audio is silence (Asterisk's 128).
    pub silencethreshold: u32,
    /// `maxlogins`: wrong passwords before VoiceMailMain gives up (3).
    pub maxlogins: u32,
    /// `attach`: the recording goes with the email (per mailbox: `attach=`).
    pub attach: bool,
    /// `serveremail`: the From of the emails (`asterisk`; a bare name gets `@` and the host).
    pub serveremail: String,
    /// `fromstring`: the From's display name (`The Asterisk PBX`).
    pub fromstring: String,
    /// `mailcmd`: the program that sends an email from its standard input.
    pub mailcmd: String,
    /// `externnotify`: a program run when a mailbox's counts change, with
    /// `context mailbox new old urgent` after it (Asterisk's `run_externnotify`).
    pub externnotify: String,
    /// `externpass`: a program that changes passwords instead of voicemail.conf being written,
    /// run as `externpass context mailbox newpassword` (Asterisk's `vm_change_password_shell`).
    pub externpass: String,
    /// `externpassnotify`: run as `externpass` is, after voicemail.conf (or secret.conf) was written.
    pub externpassnotify: String,
    /// `passwordlocation=spooldir`: passwords changed are kept in the mailbox's `secret.conf`
    /// (and read from it at load), not written to voicemail.conf.
    pub password_in_spool: bool,
    pub emailsubject: String,
    pub emailbody: String,
    /// `[zonemessages]`: name → `timezone|format` (`voicemail show zones`, the envelope's date).
    pub zones: Vec<(String, String)>,
    /// `review`: after recording, a caller may listen, re-record or accept (1/2/3).
    pub review: bool,
    /// `operator`: `0` during VoiceMail() goes to the `o` extension.
    pub operator: bool,
    /// `envelope` (Asterisk's default yes): VoiceMailMain says when a message came.
    pub envelope: bool,
    /// `saycid`: VoiceMailMain says who left a message.
    pub saycid: bool,
    /// `sayduration`: VoiceMailMain says how long a message is (when at least `saydurationm` minutes).
    pub sayduration: bool,
    /// `saydurationm` (Asterisk's 2): the shortest message, in minutes, whose length is said.
    pub saydurationm: u32,
    /// `skipms` (Asterisk's 3000): how far `#`/`*` skip and rewind within a message.
    pub skipms: u32,
    /// `nextaftercmd`: after delete (7), save (9) or forward (8), the next message plays.
    pub nextaftercmd: bool,
    /// `sendvoicemail`: advanced option 5 (leave a message for another mailbox).
    pub sendvoicemail: bool,
    /// `maxgreet`: the longest greeting in seconds (0: no limit).
    pub maxgreet: u32,
    /// `minpassword`: the shortest password accepted at a change.
    pub minpassword: u32,
    /// `exitcontext`: where `*` (`a`) and `0` (`o`) go from VoiceMail() (default: the current context).
    pub exitcontext: String,
    /// `tempgreetwarn`: VoiceMailMain reminds the owner that a temporary greeting is on.
    pub tempgreetwarn: bool,
    /// `forcename`: a new user (password = mailbox number) records a name at first login.
    pub forcename: bool,
    /// `forcegreetings`: a new user records the unavailable and busy greetings at first login.
    pub forcegreetings: bool,
    /// `cidinternalcontexts`: contexts whose callers are said as extensions in the envelope.
    pub cidinternalcontexts: Vec<String>,
}

impl Default for General {
    fn default() -> Self {
        General {
            format: "wav".into(),
            maxmsg: 100,
            maxsecs: 0,
            minsecs: 0,
            maxsilence: 0,
            silencethreshold: 128,
            maxlogins: 3,
            attach: false,
            serveremail: "asterisk".into(),
            fromstring: "The Asterisk PBX".into(),
            mailcmd: "/usr/sbin/sendmail -t".into(),
            externnotify: String::new(),
            externpass: String::new(),
            externpassnotify: String::new(),
            password_in_spool: false,
            emailsubject: DEFAULT_SUBJECT.into(),
            emailbody: DEFAULT_BODY.into(),
            zones: Vec::new(),
            review: false,
            operator: false,
            envelope: true,
            saycid: false,
            sayduration: false,
            saydurationm: 2,
            skipms: 3000,
            nextaftercmd: false,
            sendvoicemail: false,
            maxgreet: 0,
            minpassword: 0,
            exitcontext: String::new(),
            tempgreetwarn: false,
            cidinternalcontexts: Vec::new(),
            forcename: false,
            forcegreetings: false,
        }
    }
}

/// One mailbox (Asterisk's `struct ast_vm_user`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmUser {
    pub context: String,
    pub mailbox: String,
    pub password: String,
    pub fullname: String,
    pub email: String,
    pub pager: String,
    /// `attach=` of the mailbox; `None`: `[general]`'s.
    pub attach: Option<bool>,
    /// `tz=` (a `[zonemessages]` name), shown by `voicemail show users`.
    pub zone: String,
    /// The options as written (`saycid=yes`...), for those not read here.
    pub options: Vec<(String, String)>,
}

impl VmUser {
    /// `1001@default`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.mailbox, self.context)
    }

    /// The mailbox's own `name=yes|no` option (`saycid=yes`), else `general`.
    pub fn flag(&self, name: &str, general: bool) -> bool {
        self.options
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| starling_core::config::parse_bool(value))
            .unwrap_or(general)
    }

    /// The mailbox's own `name=value` option.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmConf {
    pub general: General,
    /// In the file's order.
    pub users: Vec<VmUser>,
}

impl VmConf {
    /// The mailbox `box@context` (`box` alone: in `default`), names compared without case.
    pub fn find(&self, mailbox: &str) -> Option<&VmUser> {
        let (number, context) = split_mailbox(mailbox);
        self.users.iter().find(|u| u.mailbox.eq_ignore_ascii_case(number) && u.context.eq_ignore_ascii_case(context))
    }

    pub fn parse(config: &Config) -> Result<VmConf, ConfigErrors> {
        let mut conf = VmConf::default();
        let mut errors = ConfigErrors::default();
        for section in config.sections() {
            match section.name.to_ascii_lowercase().as_str() {
                "general" => {
                    for var in &section.variables {
                        if let Err(e) = general_key(&mut conf.general, var) {
                            errors.push(e);
                        }
                    }
                }
                "zonemessages" => {
                    for var in &section.variables {
                        conf.general.zones.push((var.name.clone(), var.value.clone()));
                    }
                }
                _ => {
                    for var in &section.variables {
                        match user(&section.name, var) {
                            Ok(user) => {
                                if conf.find(&user.id()).is_some() {
                                    errors.push(ConfigError::at(
                                        &var.location,
                                        format!("mailbox {} is defined twice", user.id()),
                                    ));
                                } else {
                                    conf.users.push(user);
                                }
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
            }
        }
        errors.into_result(conf)
    }
}

/// `1001@sales` → `("1001", "sales")`; `1001` → `("1001", "default")`.
pub fn split_mailbox(mailbox: &str) -> (&str, &str) {
    let mailbox = mailbox.trim();
    match mailbox.split_once('@') {
        Some((number, context)) if !context.is_empty() => (number, context),
        Some((number, _)) => (number, "default"),
        None => (mailbox, "default"),
    }
}

fn number(var: &Variable) -> Result<u32, ConfigError> {
    var.value.trim().parse::<u32>().map_err(|_| var.error("expected a whole number"))
}

fn general_key(g: &mut General, var: &Variable) -> Result<(), ConfigError> {
    let value = var.value.trim();
    match var.name.to_ascii_lowercase().as_str() {
        "format" => {
            let formats: Vec<&str> = value.split('|').map(str::trim).collect();
            if !formats.iter().any(|f| f.eq_ignore_ascii_case("wav")) {
                return Err(var.error("only wav is written (wav49 and gsm have no codec in Starling)"));
            }
            g.format = "wav".into();
        }
        "maxmsg" => g.maxmsg = number(var)?.max(1),
        "maxsecs" | "maxmessage" => g.maxsecs = number(var)?,
        "minsecs" | "minmessage" => g.minsecs = number(var)?,
        "maxsilence" => g.maxsilence = number(var)?,
        "silencethreshold" => g.silencethreshold = number(var)?,
        "maxlogins" => g.maxlogins = number(var)?.max(1),
        "attach" => g.attach = var.parse_bool()?,
        "serveremail" => g.serveremail = value.to_owned(),
        "fromstring" => g.fromstring = value.to_owned(),
        "mailcmd" => {
            if value.is_empty() {
                return Err(var.error("expected a command"));
            }
            g.mailcmd = value.to_owned();
        }
        "externnotify" => g.externnotify = value.to_owned(),
        "externpass" => g.externpass = value.to_owned(),
        "externpassnotify" => g.externpassnotify = value.to_owned(),
        "passwordlocation" => {
            g.password_in_spool = match value.to_ascii_lowercase().as_str() {
                "voicemail" => false,
                "spooldir" => true,
                _ => return Err(var.error("expected voicemail or spooldir")),
            }
        }
        "emailsubject" => g.emailsubject = unescape(value),
        "emailbody" => g.emailbody = unescape(value),
        "review" => g.review = var.parse_bool()?,
        "operator" => g.operator = var.parse_bool()?,
        "envelope" => g.envelope = var.parse_bool()?,
        "saycid" => g.saycid = var.parse_bool()?,
        "sayduration" => g.sayduration = var.parse_bool()?,
        "saydurationm" => g.saydurationm = number(var)?,
        "skipms" => g.skipms = number(var)?,
        "nextaftercmd" => g.nextaftercmd = var.parse_bool()?,
        "sendvoicemail" => g.sendvoicemail = var.parse_bool()?,
        "maxgreet" => g.maxgreet = number(var)?,
        "minpassword" => g.minpassword = number(var)?,
        "exitcontext" => g.exitcontext = value.to_owned(),
        "tempgreetwarn" => g.tempgreetwarn = var.parse_bool()?,
        "forcename" => g.forcename = var.parse_bool()?,
        "forcegreetings" => g.forcegreetings = var.parse_bool()?,
        "cidinternalcontexts" => {
            g.cidinternalcontexts =
                value.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect();
        }
        // Understood by Asterisk; Starling takes them and does not act on them yet.
        "pbxskip" | "charset" | "emaildateformat" | "searchcontexts" | "moveheard" | "usedirectory" | "callback"
        | "dialout" | "pagerfromstring" | "pagersubject" | "pagerbody" | "attachfmt" | "volgain" | "delete"
        | "locale" | "tz" => {
            tracing::debug!("{}: {} is accepted and not used", var.location, var.name);
        }
        _ => tracing::warn!("{}: unknown key '{}' in [general] of {CONFIG}", var.location, var.name),
    }
    Ok(())
}

/// Asterisk's `substitute_escapes`: `\n`, `\t`, `\r` and `\\` in emailbody and emailsubject.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// One `mailbox => password,name,email,pager,options` line of a context.
fn user(context: &str, var: &Variable) -> Result<VmUser, ConfigError> {
    let mailbox = var.name.trim();
    if mailbox.is_empty() || mailbox.contains(['@', '/', '.']) {
        return Err(ConfigError::at(&var.location, format!("mailbox '{mailbox}': expected a mailbox number")));
    }
    let mut fields = var.value.splitn(5, ',');
    let mut next = || fields.next().unwrap_or("").trim().to_owned();
    let (password, fullname, email, pager, options) = (next(), next(), next(), next(), next());
    let mut user = VmUser {
        context: context.to_owned(),
        mailbox: mailbox.to_owned(),
        password,
        fullname,
        email,
        pager,
        attach: None,
        zone: String::new(),
        options: Vec::new(),
    };
    for option in options.split(['|', ',']).map(str::trim).filter(|o| !o.is_empty()) {
        let Some((key, value)) = option.split_once('=') else {
            return Err(ConfigError::at(
                &var.location,
                format!("mailbox {mailbox}: option '{option}': expected name=value"),
            ));
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        match key.as_str() {
            "attach" => match starling_core::config::parse_bool(value) {
                Some(on) => user.attach = Some(on),
                None => {
                    return Err(ConfigError::at(
                        &var.location,
                        format!("mailbox {mailbox}: attach '{value}': expected yes or no"),
                    ))
                }
            },
            "tz" => user.zone = value.to_owned(),
            _ => {}
        }
        user.options.push((key, value.to_owned()));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VmConf, ConfigErrors> {
        VmConf::parse(&Config::parse_str(CONFIG, text).unwrap())
    }

    #[test]
    fn general_and_mailboxes() {
        let conf = parse(
            "[general]\nformat=wav49|gsm|wav\nmaxmsg=10\nmaxsecs=60\nminsecs=2\nmaxsilence=5\nattach=yes\n\
             serveremail=vm@example.com\nmailcmd=/bin/cat\nemailsubject=New ${VM_MSGNUM}\nemailbody=Hi\\n\\t${VM_NAME}\n\
             [zonemessages]\ncentral=America/Chicago|'vm-received' Q 'digits/at' IMp\n\
             [default]\n1001 => 4242,Alice,alice@example.com,,attach=no|tz=central\n1002 => 1234,Bob\n\
             [sales]\n1001 => 9999,Sales\n",
        )
        .unwrap();
        let g = &conf.general;
        assert_eq!((g.maxmsg, g.maxsecs, g.minsecs, g.maxsilence, g.attach), (10, 60, 2, 5, true));
        assert_eq!(g.emailbody, "Hi\n\t${VM_NAME}");
        assert_eq!(g.zones[0].0, "central");
        let alice = conf.find("1001").unwrap();
        assert_eq!(
            (alice.password.as_str(), alice.fullname.as_str(), alice.email.as_str()),
            ("4242", "Alice", "alice@example.com")
        );
        assert_eq!((alice.attach, alice.zone.as_str()), (Some(false), "central"));
        assert_eq!(conf.find("1002@default").unwrap().email, "");
        assert_eq!(conf.find("1001@SALES").unwrap().fullname, "Sales");
        assert!(conf.find("1003").is_none());
        assert_eq!(split_mailbox("1001@"), ("1001", "default"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_place() {
        let errors = parse(
            "[general]\nmaxmsg=many\nattach=maybe\nformat=gsm\n[default]\n1001 => 1,A,,,attach=perhaps\n1003 => 1\n1003 => 2\n1@x => 3\n1002 => 1,B,,,novalue\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(lines.len(), 7, "{errors}");
        assert!(lines[0].starts_with("voicemail.conf:2: maxmsg 'many'"), "{errors}");
        assert!(lines[1].starts_with("voicemail.conf:3: attach 'maybe'"), "{errors}");
        assert!(lines[2].starts_with("voicemail.conf:4: format 'gsm'"), "{errors}");
        assert!(lines[3].starts_with("voicemail.conf:6: mailbox 1001: attach 'perhaps'"), "{errors}");
        assert!(lines[4].starts_with("voicemail.conf:8: mailbox 1003@default is defined twice"), "{errors}");
        assert!(lines[5].starts_with("voicemail.conf:9: mailbox '1@x'"), "{errors}");
        assert!(lines[6].starts_with("voicemail.conf:10: mailbox 1002: option 'novalue'"), "{errors}");
    }

    #[test]
    fn malformed_input_never_panics() {
        for text in [
            "[general]\nmaxmsg=\n",
            "[d]\n=>\n",
            "[d]\n1 => ,,,,,,,,,\n",
            "[d]\n1 => \\\n",
            "[general]\nemailbody=\\\n",
        ] {
            if let Ok(config) = Config::parse_str(CONFIG, text) {
                let _ = VmConf::parse(&config);
            }
        }
    }
}
