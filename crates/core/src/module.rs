//! What a module is, seen from both sides of the boundary.
//!
//! A module crate ends its `lib.rs` with [`module!`](crate::module!), which exports two symbols
//! named after the crate: `starling_build_id_<crate>` (`extern "C"`, returns the
//! [`BUILD_ID`](crate::BUILD_ID) of the core it was compiled against) and
//! `starling_module_<crate>` (returns its [`ModuleInfo`]). The loader reads the first before
//! it dares to call the second (ARCHITECTURE.md, "The module boundary"). The same id is also
//! in the library's `starling_build_id` section, which the loader reads from the file
//! before mapping it: a library built against another core usually cannot even be mapped
//! (its references into the core do not resolve), and that deserves the same clear refusal.
//!
//! `load` returns the module's state as a `Box<dyn Module>`; registrations made through the
//! [`ModuleContext`] are guards kept in that state, so dropping it (on unload, or when a
//! `?` in `load` gives up half-way) unregisters everything, as Asterisk's `unload_module`
//! undoes a partial `load_module`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cli::{CliCommand, CliRegistration};
use crate::config::{Config, ConfigErrors};
use crate::core::Core;

/// Asterisk's support levels, shown by `module show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupportLevel {
    Core,
    Extended,
    Deprecated,
}

impl SupportLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SupportLevel::Core => "core",
            SupportLevel::Extended => "extended",
            SupportLevel::Deprecated => "deprecated",
        }
    }
}

/// A module's descriptor, returned by its `starling_module_<crate>` symbol.
pub struct ModuleInfo {
    /// The crate name (`chan_sip`), which is also the file's stem (`libchan_sip.so`).
    pub name: &'static str,
    /// One line for `module show`.
    pub description: &'static str,
    pub support_level: SupportLevel,
    /// Registers what the module brings. Called once per load, on the runtime's thread pool
    /// (inside the tokio runtime, so `tokio::spawn` works).
    pub load: fn(&ModuleContext) -> Result<Box<dyn Module>, LoadError>,
}

/// A loaded module's state. Dropping it must undo every registration (guards do that).
pub trait Module: Send + Sync + 'static {
    /// Re-reads configuration. The default says the module does not support reloads.
    fn reload(&mut self, _ctx: &ModuleContext) -> Result<(), ReloadError> {
        Err(ReloadError::NotSupported)
    }
    /// Stops tasks and releases what drop alone cannot. Registrations go with the drop.
    fn unload(self: Box<Self>) {}
}

/// A module whose state is only its registrations (most function and application modules):
/// dropping it unregisters them all.
pub struct Registrations(pub Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Module for Registrations {}

impl ModuleContext {
    /// Registers every application; all or none.
    pub fn register_apps(&self, apps: Vec<crate::apps::App>) -> Result<Registrations, LoadError> {
        let mut held: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        for app in apps {
            held.push(Box::new(self.register_app(app)?));
        }
        Ok(Registrations(held))
    }

    /// Registers every function; all or none.
    pub fn register_functions(&self, functions: Vec<crate::apps::Function>) -> Result<Registrations, LoadError> {
        let mut held: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        for function in functions {
            held.push(Box::new(self.register_function(function)?));
        }
        Ok(Registrations(held))
    }
}

/// Why `load` did not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `AST_MODULE_LOAD_DECLINE`: the module chose not to run (logged, startup goes on).
    #[error("declined: {0}")]
    Decline(String),
    /// Its configuration is wrong: startup stops with exit code 1.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// It cannot open or bind what it needs (a port in use): startup stops with exit code 2.
    #[error("{0}")]
    Resource(String),
    /// Something else failed: startup stops.
    #[error("{0}")]
    Failure(String),
}

/// Why `reload` did not reload. The old state stays in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("does not support reloads")]
    NotSupported,
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Failure(String),
}

/// The per-module use count (Asterisk's `usecount`): while it is above zero the module
/// refuses to unload. Channels of a technology hold one [`ModuleUse`] each.
#[derive(Debug, Default)]
pub struct UseCount(AtomicUsize);

impl UseCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One use of a module; the count drops when this does.
#[derive(Debug)]
pub struct ModuleUse(Arc<UseCount>);

impl ModuleUse {
    /// Counts one more use of the module behind `count` until this drops.
    pub fn new(count: Arc<UseCount>) -> Self {
        count.0.fetch_add(1, Ordering::AcqRel);
        ModuleUse(count)
    }
}

impl Drop for ModuleUse {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the core hands a module's `load` and `reload`.
#[derive(Clone)]
pub struct ModuleContext {
    core: Arc<Core>,
    name: &'static str,
    uses: Arc<UseCount>,
}

impl ModuleContext {
    pub(crate) fn new(core: Arc<Core>, name: &'static str, uses: Arc<UseCount>) -> Self {
        ModuleContext { core, name, uses }
    }
    /// The module's name, as in `module show`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
    /// The runtime that every task of the module runs on.
    pub fn runtime(&self) -> crate::tokio::runtime::Handle {
        self.core.runtime()
    }
    /// `etcdir`: where `sip.conf` and friends live.
    pub fn config_dir(&self) -> PathBuf {
        self.core.settings().etcdir.clone()
    }
    /// Reads `name` (e.g. `"sip.conf"`) from `etcdir`.
    pub fn load_config(&self, name: &str) -> Result<Config, ConfigErrors> {
        Config::load(&self.core.settings().etcdir.join(name))
    }
    /// Registers CLI commands; they go away when the returned guard drops.
    pub fn register_cli(&self, commands: Vec<CliCommand>) -> Result<CliRegistration, LoadError> {
        self.core.cli().register(self.name, commands).map_err(|e| LoadError::Failure(e.to_string()))
    }
    /// Registers a dialplan application; it holds a use of this module while it runs.
    pub fn register_app(
        &self,
        mut app: crate::apps::App,
    ) -> Result<crate::apps::Registration<crate::apps::App>, LoadError> {
        app.uses = Some(self.uses.clone());
        self.core.apps().register(app.name, app).map_err(|e| LoadError::Failure(e.to_string()))
    }
    /// Registers a dialplan function.
    pub fn register_function(
        &self,
        mut function: crate::apps::Function,
    ) -> Result<crate::apps::Registration<crate::apps::Function>, LoadError> {
        function.uses = Some(self.uses.clone());
        self.core.functions().register(function.name, function).map_err(|e| LoadError::Failure(e.to_string()))
    }
    /// Registers a channel technology (`SIP`); it goes away when the guard drops.
    pub fn register_tech(
        &self,
        tech: Arc<dyn crate::tech::Tech>,
    ) -> Result<crate::apps::Registration<Arc<dyn crate::tech::Tech>>, LoadError> {
        self.core.techs().register(tech.name(), tech).map_err(|e| LoadError::Failure(e.to_string()))
    }
    /// Registers the music on hold player (res_musiconhold).
    pub fn register_moh(
        &self,
        player: Arc<dyn crate::moh::MusicOnHold>,
    ) -> Result<crate::apps::Registration<Arc<dyn crate::moh::MusicOnHold>>, LoadError> {
        self.core.moh().register(crate::moh::PLAYER, player).map_err(|e| LoadError::Failure(e.to_string()))
    }
    /// A use of this module for a running application (see [`crate::apps::App::uses`]).
    pub fn uses(&self) -> Arc<UseCount> {
        self.uses.clone()
    }

    /// Marks the module as in use until the guard drops (a channel, a running application).
    pub fn use_ref(&self) -> ModuleUse {
        ModuleUse::new(self.uses.clone())
    }
}

/// Exports a module's two symbols. Use once, at the end of the module's `lib.rs`:
///
/// ```ignore
/// starling_core::module! {
///     description: "Simple Echo Application",
///     support_level: Core,
///     load: load,
/// }
/// ```
///
/// The module's name is its crate name. It also defines `pub fn module_info()`, which the
/// `static-modules` build of the binary links directly.
#[macro_export]
macro_rules! module {
    (description: $description:expr, support_level: $level:ident, load: $load:path $(,)?) => {
        /// The module's descriptor (also exported as `starling_module_<crate>`).
        pub fn module_info() -> &'static $crate::ModuleInfo {
            static INFO: $crate::ModuleInfo = $crate::ModuleInfo {
                name: env!("CARGO_CRATE_NAME"),
                description: $description,
                support_level: $crate::SupportLevel::$level,
                load: $load,
            };
            &INFO
        }

        /// The build id of the core this module was compiled against, in a section of its
        /// own so that the loader can read it from the file before mapping it.
        #[doc(hidden)]
        #[link_section = "starling_build_id"]
        pub static __STARLING_BUILD_ID: [u8; $crate::BUILD_ID_BYTES.len()] = $crate::BUILD_ID_BYTES;

        #[doc(hidden)]
        #[export_name = concat!("starling_build_id_", env!("CARGO_CRATE_NAME"))]
        pub extern "C" fn __starling_build_id() -> *const ::std::ffi::c_char {
            // A copy made when this library was compiled: it names the core this module was
            // built against, whatever core has loaded it. Returning it also keeps the
            // section alive through the linker's garbage collection.
            __STARLING_BUILD_ID.as_ptr().cast()
        }

        #[doc(hidden)]
        #[export_name = concat!("starling_module_", env!("CARGO_CRATE_NAME"))]
        pub fn __starling_module() -> &'static $crate::ModuleInfo {
            module_info()
        }
    };
}
