//! The module loader: `modules.conf`, `module load|unload|reload`, `module show`.
//!
//! A module is found as `lib<name>.so` in `moddir` (or in the binary's static table with the
//! `static-modules` feature). Before anything else, the loader calls its
//! `starling_build_id_<name>` symbol and refuses a library whose build id differs from this
//! core's [`BUILD_ID`]: Rust has no stable ABI, so only a module built by the same compiler
//! against the same core may run (Asterisk's `buildopt_sum` check in `main/loader.c`).
//!
//! Libraries are never `dlclose`d: tokio and tracing keep pointers into them (callsites,
//! task vtables) that may outlive an unload. Unload drops the module's state and leaves the
//! code mapped; loading a module again whose file has changed maps a copy of the new file
//! under a fresh path, because `dlopen` of the old path would return the old mapping.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::cli::{CliCall, CliCommand, CliResult};
use crate::config::{Config, ConfigError, ConfigErrors, Location};
use crate::core::Core;
use crate::module::{LoadError, Module, ModuleContext, ModuleInfo, ReloadError, UseCount};
use crate::BUILD_ID;

/// A module linked into the binary (`static-modules`): its descriptor function.
pub type StaticModule = fn() -> &'static ModuleInfo;

/// Prefixes of the files `autoload=yes` loads, in load order: resources first, channel
/// drivers before the applications that use them. Other libraries in `moddir` (the core
/// itself, `test_*` fixtures) are loaded only by an explicit `load =>`.
const AUTOLOAD_PREFIXES: [&str; 10] =
    ["res_", "cdr_", "codec_", "format_", "bridge_", "func_", "pbx_", "chan_", "app_", "cel_"];

/// What went wrong with one module operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    #[error("module '{0}' is not in {1}")]
    NotFound(String, PathBuf),
    #[error("module '{0}' is already loaded")]
    AlreadyLoaded(String),
    #[error("module '{0}' is not loaded")]
    NotLoaded(String),
    #[error("module '{name}' is in use ({count} uses): it cannot be unloaded now")]
    InUse { name: String, count: usize },
    #[error(
        "refusing module '{name}': it was built against another core or by another compiler \
         (its build id '{theirs}', this core's '{ours}'); rebuild it with this Starling"
    )]
    BuildIdMismatch { name: String, theirs: String, ours: String },
    #[error("{path} is not a Starling module: {why}")]
    NotAModule { path: PathBuf, why: String },
    #[error("cannot open module {path}: {why}")]
    Open { path: PathBuf, why: String },
    #[error("module '{name}' failed to load: {error}")]
    Load { name: String, error: LoadError },
    #[error("module '{name}' {error}")]
    Reload { name: String, error: ReloadError },
}

/// `modules.conf` `[modules]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModulesConf {
    pub autoload: bool,
    pub preload: Vec<(String, Location)>,
    pub load: Vec<(String, Location)>,
    pub noload: Vec<String>,
}

impl ModulesConf {
    pub fn parse(config: &Config) -> Result<ModulesConf, ConfigErrors> {
        let mut conf = ModulesConf::default();
        let mut errors = ConfigErrors::default();
        for section in config.sections() {
            if !section.name.eq_ignore_ascii_case("modules") {
                errors.push(ConfigError::at(
                    &section.location,
                    format!("unknown section [{}]: expected [modules]", section.name),
                ));
                continue;
            }
            for var in &section.variables {
                let name = module_name(&var.value);
                let key = var.name.to_ascii_lowercase();
                match key.as_str() {
                    "autoload" => match var.parse_bool() {
                        Ok(b) => conf.autoload = b,
                        Err(e) => errors.push(e),
                    },
                    "preload" | "load" | "noload" | "require" | "preload-require" if name.is_empty() => {
                        errors.push(var.error("expected a module name"))
                    }
                    "preload" | "preload-require" => conf.preload.push((name, var.location.clone())),
                    "load" | "require" => conf.load.push((name, var.location.clone())),
                    "noload" => conf.noload.push(name),
                    _ => errors.push(ConfigError::at(
                        &var.location,
                        format!("unknown key '{}': expected autoload, preload, load or noload", var.name),
                    )),
                }
            }
        }
        errors.into_result(conf)
    }
}

/// `chan_sip.so`, `libchan_sip.so`, `chan_sip` → `chan_sip`.
pub fn module_name(spec: &str) -> String {
    let spec = spec.trim();
    let spec = spec.strip_suffix(".so").unwrap_or(spec);
    let spec = spec.strip_prefix("lib").unwrap_or(spec);
    spec.to_owned()
}

/// One row of `module show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRow {
    pub name: String,
    pub description: String,
    pub use_count: usize,
    pub support_level: &'static str,
}

struct Loaded {
    info: &'static ModuleInfo,
    state: Box<dyn Module>,
    uses: Arc<UseCount>,
    /// When it was loaded, for unloading in reverse order.
    order: u64,
}

/// A file that has been mapped, so a changed file can be told from the mapped one.
struct Mapped {
    stamp: (SystemTime, u64),
    info: &'static ModuleInfo,
}

#[derive(Default)]
struct State {
    loaded: BTreeMap<String, Loaded>,
    mapped: BTreeMap<String, Mapped>,
    copies: u64,
    loads: u64,
}

/// The loader. One per [`Core`].
#[derive(Default)]
pub struct Loader {
    /// Serialises load/unload/reload; module code runs while it is held.
    operation: Mutex<()>,
    state: Mutex<State>,
    statics: Mutex<Vec<StaticModule>>,
}

impl Loader {
    /// Sets the modules linked into the binary (`static-modules`); they are found before moddir.
    pub fn set_static_modules(&self, modules: Vec<StaticModule>) {
        *self.statics.lock().unwrap_or_else(|p| p.into_inner()) = modules;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find_static(&self, name: &str) -> Option<&'static ModuleInfo> {
        let statics = self.statics.lock().unwrap_or_else(|p| p.into_inner());
        statics.iter().map(|f| f()).find(|info| info.name == name)
    }

    /// The modules `modules.conf` asks for at start, in load order.
    pub fn startup_list(&self, core: &Core, conf: &ModulesConf) -> Result<Vec<(String, Option<Location>)>, LoadError> {
        let mut list: Vec<(String, Option<Location>)> = Vec::new();
        let push = |name: &str, location: Option<Location>, list: &mut Vec<(String, Option<Location>)>| {
            if !conf.noload.iter().any(|n| n == name) && !list.iter().any(|(n, _)| n == name) {
                list.push((name.to_owned(), location));
            }
        };
        for (name, location) in conf.preload.iter().chain(&conf.load) {
            push(name, Some(location.clone()), &mut list);
        }
        if conf.autoload {
            let mut found: Vec<String> = {
                let statics = self.statics.lock().unwrap_or_else(|p| p.into_inner());
                statics.iter().map(|f| f().name.to_owned()).collect()
            };
            let moddir = &core.settings().moddir;
            let entries = match std::fs::read_dir(moddir) {
                Ok(entries) => Some(entries),
                // A single-file deployment (static-modules) may have no moddir at all.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !found.is_empty() => None,
                Err(e) => return Err(LoadError::Resource(format!("cannot open moddir {}: {e}", moddir.display()))),
            };
            for entry in entries.into_iter().flatten().flatten() {
                let file = entry.file_name();
                let file = file.to_string_lossy();
                if let Some(name) = file.strip_prefix("lib").and_then(|f| f.strip_suffix(".so")) {
                    found.push(name.to_owned());
                }
            }
            let rank = |name: &str| AUTOLOAD_PREFIXES.iter().position(|p| name.starts_with(p));
            found.retain(|name| rank(name).is_some());
            found.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
            for name in found {
                push(&name, None, &mut list);
            }
        }
        Ok(list)
    }

    /// Loads one module (`module load`).
    pub fn load(&self, core: &Arc<Core>, name: &str) -> Result<(), LoaderError> {
        let name = module_name(name);
        let _operation = self.operation.lock().unwrap_or_else(|p| p.into_inner());
        if self.lock().loaded.contains_key(&name) {
            return Err(LoaderError::AlreadyLoaded(name));
        }
        let info = match self.find_static(&name) {
            Some(info) => info,
            None => self.map_library(core, &name)?,
        };
        let uses = Arc::new(UseCount::default());
        let ctx = ModuleContext::new(core.clone(), info.name, uses.clone());
        let state = (info.load)(&ctx).map_err(|error| LoaderError::Load { name: name.clone(), error })?;
        let mut state_lock = self.lock();
        state_lock.loads += 1;
        let order = state_lock.loads;
        state_lock.loaded.insert(name, Loaded { info, state, uses, order });
        drop(state_lock);
        // What the module brought (a technology, a device state provider) may change hints.
        core.hints_refresh();
        Ok(())
    }

    /// Maps `lib<name>.so` from moddir (or a fresh copy if it changed since it was mapped),
    /// checks its build id and returns its descriptor.
    fn map_library(&self, core: &Core, name: &str) -> Result<&'static ModuleInfo, LoaderError> {
        let moddir = &core.settings().moddir;
        let path = moddir.join(format!("lib{name}.so"));
        let meta = std::fs::metadata(&path).map_err(|_| LoaderError::NotFound(name.to_owned(), moddir.clone()))?;
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        let open_path = {
            let mut state = self.lock();
            match state.mapped.get(name) {
                Some(mapped) if mapped.stamp == stamp => return Ok(mapped.info),
                Some(_) => {
                    state.copies += 1;
                    let dir = core.settings().rundir.join("modules");
                    let copy = dir.join(format!("lib{name}-{}-{}.so", std::process::id(), state.copies));
                    std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&path, &copy)).map_err(|e| {
                        LoaderError::Open { path: copy.clone(), why: format!("cannot copy the changed module: {e}") }
                    })?;
                    copy
                }
                None => path.clone(),
            }
        };
        let opened = open_module(&open_path, name);
        if open_path != path {
            // The mapping outlives the file's name; nothing piles up in rundir.
            let _ = std::fs::remove_file(&open_path);
        }
        let info = opened?;
        self.lock().mapped.insert(name.to_owned(), Mapped { stamp, info });
        Ok(info)
    }

    /// Unloads one module (`module unload`); refused while it is in use.
    pub fn unload(&self, name: &str) -> Result<(), LoaderError> {
        let name = module_name(name);
        let _operation = self.operation.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = {
            let mut state = self.lock();
            let loaded = state.loaded.get(&name).ok_or_else(|| LoaderError::NotLoaded(name.clone()))?;
            let count = loaded.uses.get();
            if count > 0 {
                return Err(LoaderError::InUse { name, count });
            }
            state.loaded.remove(&name).expect("checked above")
        };
        loaded.state.unload();
        Ok(())
    }

    /// Calls one module's reload (`module reload NAME`).
    pub fn reload(&self, core: &Arc<Core>, name: &str) -> Result<(), LoaderError> {
        let name = module_name(name);
        let _operation = self.operation.lock().unwrap_or_else(|p| p.into_inner());
        // Take the state out so module code never runs under the state lock.
        let mut loaded = self.lock().loaded.remove(&name).ok_or_else(|| LoaderError::NotLoaded(name.clone()))?;
        let ctx = ModuleContext::new(core.clone(), loaded.info.name, loaded.uses.clone());
        let result = loaded.state.reload(&ctx);
        self.lock().loaded.insert(name.clone(), loaded);
        result.map_err(|error| {
            let error = LoaderError::Reload { name, error };
            // Into the log as well as to whoever asked: the running configuration stays.
            if !matches!(error, LoaderError::Reload { error: ReloadError::NotSupported, .. }) {
                tracing::error!("{error}; the running configuration is kept");
            }
            error
        })
    }

    /// Reloads every module that supports it; returns a line per failure.
    pub fn reload_all(&self, core: &Arc<Core>) -> Vec<String> {
        let names: Vec<String> = self.lock().loaded.keys().cloned().collect();
        names
            .into_iter()
            .filter_map(|name| match self.reload(core, &name) {
                Ok(()) | Err(LoaderError::Reload { error: ReloadError::NotSupported, .. }) => None,
                Err(e) => Some(e.to_string()),
            })
            .collect()
    }

    /// Unloads everything at shutdown, the last loaded first (as Asterisk does): applications
    /// and channel drivers go before the resources they use.
    pub fn unload_all(&self) {
        let _operation = self.operation.lock().unwrap_or_else(|p| p.into_inner());
        let mut loaded: Vec<Loaded> = std::mem::take(&mut self.lock().loaded).into_values().collect();
        loaded.sort_by_key(|m| std::cmp::Reverse(m.order));
        for module in loaded {
            module.state.unload();
        }
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        self.lock().loaded.contains_key(&module_name(name))
    }

    /// What `module show` lists, sorted by name.
    pub fn modules(&self) -> Vec<ModuleRow> {
        self.lock()
            .loaded
            .iter()
            .map(|(name, m)| ModuleRow {
                name: name.clone(),
                description: m.info.description.to_owned(),
                use_count: m.uses.get(),
                support_level: m.info.support_level.as_str(),
            })
            .collect()
    }
}

/// The build id in a library's `starling_build_id` section, read from the file. `None` when
/// the file is not an ELF library with that section.
fn read_build_id(path: &Path) -> Option<String> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let section = file.section_by_name("starling_build_id")?;
    let bytes = section.data().ok()?;
    let id = bytes.split(|b| *b == 0).next()?;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// Opens a library, checks its build id, and returns its descriptor. The library stays mapped.
fn open_module(path: &Path, name: &str) -> Result<&'static ModuleInfo, LoaderError> {
    // First from the file, before anything of it is mapped or run.
    if let Some(theirs) = read_build_id(path) {
        if theirs != BUILD_ID {
            return Err(LoaderError::BuildIdMismatch { name: name.to_owned(), theirs, ours: BUILD_ID.to_owned() });
        }
    }
    // SAFETY: running a library's initialisers is the point of loading it; Rust modules have none
    // of their own, and the build-id check below comes before any Rust-ABI call.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoaderError::Open { path: path.to_owned(), why: e.to_string() })?;
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    let build_id_symbol = format!("starling_build_id_{name}");
    // SAFETY: the symbol's type is fixed by `module!`: `extern "C" fn() -> *const c_char`.
    let build_id = unsafe { library.get::<extern "C" fn() -> *const c_char>(build_id_symbol.as_bytes()) }
        .map_err(|_| LoaderError::NotAModule { path: path.to_owned(), why: format!("no symbol {build_id_symbol}") })?;
    let theirs = build_id();
    // SAFETY: the function returns a pointer to a NUL-terminated constant in the library, which stays mapped.
    let theirs =
        if theirs.is_null() { String::new() } else { unsafe { CStr::from_ptr(theirs) }.to_string_lossy().into_owned() };
    if theirs != BUILD_ID {
        return Err(LoaderError::BuildIdMismatch { name: name.to_owned(), theirs, ours: BUILD_ID.to_owned() });
    }
    let module_symbol = format!("starling_module_{name}");
    // SAFETY: the build ids match, so the library was built by this compiler against this core,
    // and `module!` gives the symbol this Rust type.
    let descriptor = unsafe { library.get::<fn() -> &'static ModuleInfo>(module_symbol.as_bytes()) }
        .map_err(|_| LoaderError::NotAModule { path: path.to_owned(), why: format!("no symbol {module_symbol}") })?;
    let info = descriptor();
    if info.name != name {
        return Err(LoaderError::NotAModule { path: path.to_owned(), why: format!("it calls itself '{}'", info.name) });
    }
    Ok(info)
}

/// The `module ...` CLI commands.
pub(crate) fn cli_commands() -> Vec<CliCommand> {
    let names = |core: &Arc<Core>, _: &[&str], _: usize| {
        core.loader().modules().into_iter().map(|m| format!("{}.so", m.name)).collect()
    };
    vec![
        CliCommand::new(
            "module show",
            "List modules and info",
            "Usage: module show [like keyword]\n       Shows Starling modules currently in use, and usage statistics.\n",
            module_show,
        ),
        CliCommand::new("module load", "Load a module by name", "Usage: module load <module name>\n       Loads the specified module into Starling.\n", |call| {
            let [name] = call.args() else { return CliResult::ShowUsage };
            let name = name.clone();
            match call.core.loader().load(call.core, &name) {
                Ok(()) => {
                    let _ = writeln!(call, "Loaded {}.so", module_name(&name));
                    CliResult::Success
                }
                Err(e) => {
                    let _ = writeln!(call, "Unable to load module {}.so: {e}", module_name(&name));
                    CliResult::Failure
                }
            }
        }),
        CliCommand::new("module unload", "Unload a module by name", "Usage: module unload <module name>\n       Unloads the specified module from Starling.\n", |call| {
            let [name] = call.args() else { return CliResult::ShowUsage };
            let name = name.clone();
            match call.core.loader().unload(&name) {
                Ok(()) => {
                    // What it took away (a technology, a provider) changes hints.
                    call.core.hints_refresh();
                    let _ = writeln!(call, "Unloaded {}.so", module_name(&name));
                    CliResult::Success
                }
                Err(e) => {
                    let _ = writeln!(call, "Unable to unload resource {}.so: {e}", module_name(&name));
                    CliResult::Failure
                }
            }
        })
        .with_completer(names),
        CliCommand::new(
            "module reload",
            "Reload configuration for a module",
            "Usage: module reload [module ...]\n       Reloads configuration files for the named modules, or all of them.\n",
            |call| {
                let names: Vec<String> = call.args().to_vec();
                if names.is_empty() {
                    for problem in call.core.reload() {
                        let _ = writeln!(call, "{problem}");
                    }
                    return CliResult::Success;
                }
                let mut result = CliResult::Success;
                for name in names {
                    match call.core.loader().reload(call.core, &name) {
                        Ok(()) => {
                            let _ = writeln!(call, "Module '{}' reloaded successfully.", module_name(&name));
                        }
                        Err(LoaderError::Reload { error: ReloadError::NotSupported, .. }) => {
                            let _ = writeln!(call, "The module '{}' does not support reloads", module_name(&name));
                        }
                        Err(e) => {
                            let _ = writeln!(call, "{e}");
                            result = CliResult::Failure;
                        }
                    }
                }
                result
            },
        )
        .with_completer(names),
    ]
}

fn module_show(call: &mut CliCall<'_>) -> CliResult {
    let like = match call.args() {
        [] => None,
        [like, word] if like.eq_ignore_ascii_case("like") => Some(word.to_ascii_lowercase()),
        _ => return CliResult::ShowUsage,
    };
    let rows: Vec<ModuleRow> = call
        .core
        .loader()
        .modules()
        .into_iter()
        .filter(|m| like.as_ref().is_none_or(|w| m.name.to_ascii_lowercase().contains(w.as_str())))
        .collect();
    let _ = writeln!(
        call,
        "{:<30} {:<40.40} {:<10} {:<11} {:>13}",
        "Module", "Description", "Use Count", "Status", "Support Level"
    );
    for m in &rows {
        let _ = writeln!(
            call,
            "{:<30} {:<40.40} {:<10} {:<11} {:>13}",
            format!("{}.so", m.name),
            m.description,
            m.use_count,
            "Running",
            m.support_level
        );
    }
    let _ = writeln!(call, "{} modules loaded", rows.len());
    CliResult::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_file_names() {
        assert_eq!(module_name("chan_sip.so"), "chan_sip");
        assert_eq!(module_name(" libchan_sip.so "), "chan_sip");
        assert_eq!(module_name("app_echo"), "app_echo");
    }

    #[test]
    fn modules_conf() {
        let c = Config::parse_str(
            "modules.conf",
            "[modules]\nautoload=yes\npreload => res_a.so\nload => chan_sip.so\nnoload => app_x.so\n",
        )
        .unwrap();
        let m = ModulesConf::parse(&c).unwrap();
        assert!(m.autoload);
        assert_eq!(m.preload[0].0, "res_a");
        assert_eq!(m.load[0].0, "chan_sip");
        assert_eq!(m.noload, ["app_x"]);
        let c = Config::parse_str("modules.conf", "[modules]\nautoload=perhaps\nunload => x\n").unwrap();
        let e = ModulesConf::parse(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "modules.conf:2: autoload 'perhaps': expected yes or no\nmodules.conf:3: unknown key 'unload': expected autoload, preload, load or noload"
        );
    }

    #[test]
    fn startup_order_and_noload() {
        let core = Core::for_tests();
        let dir = tempfile::tempdir().unwrap();
        for f in ["libapp_b.so", "libchan_x.so", "libres_a.so", "libstarling_core.so", "libtest_fix.so", "libapp_no.so"]
        {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let mut settings = core.settings().clone();
        settings.moddir = dir.path().to_owned();
        let core = Core::new(settings, core.runtime());
        let c = Config::parse_str("modules.conf", "[modules]\nautoload=yes\nload=>test_fix.so\nnoload=>app_no.so\n")
            .unwrap();
        let list = core.loader().startup_list(&core, &ModulesConf::parse(&c).unwrap()).unwrap();
        let names: Vec<_> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["test_fix", "res_a", "chan_x", "app_b"]);
    }

    struct Nothing;
    impl Module for Nothing {}
    fn load_nothing(_: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
        Ok(Box::new(Nothing))
    }
    static NOTHING: ModuleInfo = ModuleInfo {
        name: "res_static",
        description: "A module linked into the binary",
        support_level: crate::SupportLevel::Extended,
        load: load_nothing,
    };
    fn nothing() -> &'static ModuleInfo {
        &NOTHING
    }

    #[test]
    fn static_modules_are_found_without_a_moddir() {
        let core = Core::for_tests();
        let mut settings = core.settings().clone();
        settings.moddir = "/nonexistent/moddir".into();
        let core = Core::new(settings, core.runtime());
        core.loader().set_static_modules(vec![nothing]);
        let conf = ModulesConf { autoload: true, ..ModulesConf::default() };
        let list = core.loader().startup_list(&core, &conf).unwrap();
        assert_eq!(list.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["res_static"]);
        core.loader().load(&core, "res_static.so").unwrap();
        let out = core.cli().execute(&core, crate::cli::ConsoleId::Root, "module show");
        assert!(out.contains("res_static.so                  A module linked into the binary"), "{out}");
        let out = core.cli().execute(&core, crate::cli::ConsoleId::Root, "module reload res_static");
        assert_eq!(out, "The module 'res_static' does not support reloads\n");
        core.loader().unload("res_static").unwrap();
        assert!(!core.loader().is_loaded("res_static"));
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused_clearly() {
        let core = Core::for_tests();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libres_bogus.so"), b"not an ELF file").unwrap();
        let mut settings = core.settings().clone();
        settings.moddir = dir.path().to_owned();
        let core = Core::new(settings, core.runtime());
        let e = core.loader().load(&core, "res_bogus.so").unwrap_err();
        assert!(matches!(e, LoaderError::Open { .. }), "{e}");
        let e = core.loader().load(&core, "res_missing").unwrap_err();
        assert!(matches!(e, LoaderError::NotFound(..)), "{e}");
        assert!(core.cli().execute(&core, crate::cli::ConsoleId::Root, "module show").ends_with("0 modules loaded\n"));
    }
}
