//! res_clialiases: Asterisk's CLI aliases from `cli_aliases.conf`.
//!
//! ```text
//! [general]
//! template = friendly        ; use the aliases of [friendly]
//! [friendly]
//! reload => module reload    ; "reload chan_sip.so" runs "module reload chan_sip.so"
//! ```
//!
//! Each alias is a CLI command of its own; the words typed after it are passed on to the
//! real command. `cli show aliases` lists them. It serves no step of the call flow: it is
//! the console's, and the first module that proved the loader, the registry and reload.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use starling_core::cli::{CliCommand, CliRegistration, CliResult};
use starling_core::config::{Config, ConfigError, ConfigErrors};
use starling_core::{tracing, LoadError, Module, ModuleContext, ReloadError};

const CONFIG: &str = "cli_aliases.conf";

/// One `alias => real command` line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Alias {
    alias: String,
    real: String,
}

/// The aliases `[general] template = ...` selects, in file order.
fn parse(config: &Config) -> Result<Vec<Alias>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut aliases = Vec::new();
    let Some(general) = config.section("general") else { return Ok(aliases) };
    for template in general.get_all("template") {
        let Some(section) = config.all_sections().iter().find(|s| s.name.eq_ignore_ascii_case(&template.value)) else {
            errors.push(template.error("no such section of aliases"));
            continue;
        };
        for var in &section.variables {
            let alias = var.name.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
            let real = var.value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
            let loops = real == alias || real.starts_with(&format!("{alias} "));
            if real.is_empty() || loops {
                errors.push(ConfigError::at(&var.location, format!("alias '{alias}' must name another command")));
                continue;
            }
            aliases.push(Alias { alias, real });
        }
    }
    errors.into_result(aliases)
}

struct Aliases {
    ctx: ModuleContext,
    /// The aliases in force and their registrations; swapped whole on reload.
    current: Arc<Mutex<Vec<Alias>>>,
    registrations: Vec<CliRegistration>,
    _show: CliRegistration,
}

impl Aliases {
    /// Registers each alias on its own, so one clash (an alias that is also a real
    /// command) skips only that alias, with a warning, as Asterisk does.
    fn install(&mut self, aliases: Vec<Alias>) {
        self.registrations.clear();
        for alias in &aliases {
            let real = alias.real.clone();
            let command = CliCommand::new(
                alias.alias.clone(),
                format!("Alias for '{}'", alias.real),
                format!("Usage: {} ...\n       Runs '{}'.\n", alias.alias, alias.real),
                move |call| {
                    let mut line = real.clone();
                    for arg in call.args() {
                        line.push(' ');
                        line.push_str(arg);
                    }
                    let out = call.core.cli().execute(call.core, call.console, &line);
                    call.print(&out);
                    CliResult::Success
                },
            );
            match self.ctx.register_cli(vec![command]) {
                Ok(registration) => self.registrations.push(registration),
                Err(e) => tracing::warn!("{CONFIG}: alias '{}' not added: {e}", alias.alias),
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = aliases;
    }
}

impl Module for Aliases {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        let aliases = parse(&ctx.load_config(CONFIG)?)?;
        self.install(aliases);
        Ok(())
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let config = match ctx.load_config(CONFIG) {
        Ok(config) => config,
        Err(_) if !ctx.config_dir().join(CONFIG).exists() => {
            return Err(LoadError::Decline(format!("no {CONFIG} in {}", ctx.config_dir().display())))
        }
        Err(e) => return Err(e.into()),
    };
    let aliases = parse(&config)?;
    let current: Arc<Mutex<Vec<Alias>>> = Arc::default();
    let shown = current.clone();
    let show = CliCommand::new(
        "cli show aliases",
        "Show CLI command aliases",
        "Usage: cli show aliases\n       Displays a list of aliased CLI commands.\n",
        move |call| {
            let _ = writeln!(call, "{:<50.50} {:<50.50}", "Alias Command", "Real Command");
            for a in shown.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let _ = writeln!(call, "{:<50.50} {:<50.50}", a.alias, a.real);
            }
            CliResult::Success
        },
    );
    let mut module =
        Aliases { ctx: ctx.clone(), current, registrations: Vec::new(), _show: ctx.register_cli(vec![show])? };
    module.install(aliases);
    Ok(Box::new(module))
}

starling_core::module! {
    description: "CLI Aliases",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_from_the_chosen_template() {
        let c = Config::parse_str(CONFIG, "[general]\ntemplate = friendly\n[friendly]\nreload => module reload\nhangup  request => channel request hangup\n[other]\nx => y\n").unwrap();
        let a = parse(&c).unwrap();
        assert_eq!(
            a,
            [
                Alias { alias: "reload".into(), real: "module reload".into() },
                Alias { alias: "hangup request".into(), real: "channel request hangup".into() }
            ]
        );
    }

    #[test]
    fn an_alias_of_itself_and_a_missing_template_are_errors() {
        let c =
            Config::parse_str(CONFIG, "[general]\ntemplate = nope\ntemplate = t\n[t]\nreload => reload now\n").unwrap();
        let e = parse(&c).unwrap_err().to_string();
        assert_eq!(e, "cli_aliases.conf:2: template 'nope': no such section of aliases\ncli_aliases.conf:5: alias 'reload' must name another command");
    }
}
