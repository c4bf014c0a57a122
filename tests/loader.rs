use std::process::Command;

use crate::util::*;

/// The profile the tests were built with, and its target folder.
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// The features of each package in the core's dependency tree, as `cargo tree` resolves them.
fn dependency_features(args: &[&str]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let out = cargo().args(["tree", "--prefix", "none", "-f", "{p}|{f}"]).args(args).output().expect("run cargo tree");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut features = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, list)) = line.trim_end_matches(" (*)").split_once('|') else { continue };
        let package = package.split(' ').take(2).collect::<Vec<_>>().join(" ");
        features.entry(package).or_default().extend(list.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
    }
    features
}

/// ARCHITECTURE.md: building one module must not rebuild the core (the sign that feature
/// unification has changed it, which would break every other module's build id).
#[test]
fn building_one_module_does_not_rebuild_the_core() {
    // First without building: a dependency of the core whose features differ between the core
    // alone and the whole workspace (tests included) would make the build below replace the
    // core under every other running test. Name it clearly instead.
    let alone = dependency_features(&["-p", "starling-core", "-e", "normal,build"]);
    let workspace = dependency_features(&["--workspace", "-e", "normal,build,dev"]);
    let differ: Vec<String> = alone
        .iter()
        .filter(|(package, features)| workspace.get(*package) != Some(features))
        .map(|(package, features)| {
            format!("{package}: core alone {features:?}, workspace {:?}", workspace.get(package))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "give the core these dependencies with the workspace's features:\n{}",
        differ.join("\n")
    );

    for module in ["res_clialiases", "test_loader"] {
        let out = cargo()
            .args(["build", "--profile", profile(), "-p", module, "--message-format=json"])
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let core = stdout
            .lines()
            .find(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"name\":\"starling_core\""))
            .expect("cargo reports the core");
        assert!(core.contains("\"fresh\":true"), "building {module} rebuilt the core:\n{core}");
    }
}

fn server_with(name: &str, modules_conf: &str) -> Server {
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", modules_conf);
    Server::start(dir)
}

#[test]
fn load_unload_reload_and_use_counts() {
    let server = server_with("loadunload", "[modules]\nautoload = no\n");
    assert!(server.rx("module show").ends_with("0 modules loaded\n"));
    assert!(server.rx("test loader show").starts_with("No such command"));

    assert_eq!(server.rx("module load test_loader.so"), "Loaded test_loader.so\n");
    let show = server.rx("module show like loader");
    assert!(
        show.contains("test_loader.so                 Loader test module                       0          Running"),
        "{show}"
    );
    assert!(show.ends_with("1 modules loaded\n"), "{show}");
    assert!(server.rx("module load test_loader").contains("already loaded"));

    assert_eq!(server.rx("module reload test_loader.so"), "Module 'test_loader' reloaded successfully.\n");
    assert!(server.rx("test loader show").contains("reloads=1"));

    // In use: a channel holds the module.
    server.rx("test loader hold");
    assert!(server.rx("module show").contains("Loader test module                       1 "), "use count 1");
    let refused = server.rx("module unload test_loader.so");
    assert!(refused.contains("Unable to unload resource test_loader.so") && refused.contains("in use"), "{refused}");
    server.rx("test loader release");

    assert_eq!(server.rx("module unload test_loader.so"), "Unloaded test_loader.so\n");
    assert!(server.rx("test loader show").starts_with("No such command"), "its CLI went with it");
    assert!(server.rx("module show").ends_with("0 modules loaded\n"));
    assert!(server.rx("module unload test_loader.so").contains("not loaded"));

    // Loading again maps the same library (never dlclosed) and starts afresh.
    assert_eq!(server.rx("module load test_loader.so"), "Loaded test_loader.so\n");
    assert!(server.rx("test loader show").contains("reloads=0"));
    assert!(server
        .rx("module load no_such_module.so")
        .contains("Unable to load module no_such_module.so: module 'no_such_module' is not in"));
}

#[test]
fn a_module_without_reload_says_so() {
    let dir = TestDir::new("noreload");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => res_clialiases.so\n");
    dir.write("cli_aliases.conf", "[general]\ntemplate = t\n[t]\nver => core show version\n");
    let server = Server::start(dir);
    assert!(server.rx("ver").starts_with("Starling "));
    // A broken file on reload keeps the old aliases and names the line.
    server.dir.write("cli_aliases.conf", "[general]\ntemplate = t\n[t]\nver\n");
    let out = server.rx("module reload res_clialiases");
    assert!(out.contains("cli_aliases.conf:4: expected 'key = value'"), "{out}");
    assert!(server.rx("ver").starts_with("Starling "), "the old aliases stay");
    server.dir.write("cli_aliases.conf", "[general]\ntemplate = t\n[t]\nmods => module show\n");
    assert_eq!(server.rx("module reload res_clialiases"), "Module 'res_clialiases' reloaded successfully.\n");
    assert!(server.rx("ver").starts_with("No such command"));
    assert!(server.rx("mods").ends_with("1 modules loaded\n"));
    assert!(server.rx("cli show aliases").contains("mods"));
}

#[test]
fn noload_and_load_lines_are_obeyed() {
    let server =
        server_with("noload", "[modules]\nautoload = yes\nnoload => res_clialiases.so\nload => test_loader.so\n");
    let show = server.rx("module show");
    assert!(!show.contains("res_clialiases"), "{show}");
    assert!(show.contains("test_loader.so"), "{show}");
}

#[test]
fn a_missing_module_in_modules_conf_is_logged_with_its_line_and_startup_goes_on() {
    let server = server_with("missing", "[modules]\nautoload = no\nload => app_nothere.so\n");
    assert!(server.rx("module show").ends_with("0 modules loaded\n"));
    assert!(server.log().contains("modules.conf:3: module 'app_nothere' is not in"), "{}", server.log_tail());
}

/// A module built against another core (here: the other cargo profile, whose build id
/// differs) is refused with a clear message, and the server goes on.
#[test]
fn a_module_built_against_another_core_is_refused() {
    let other = if profile() == "release" { "dev" } else { "release" };
    let out = cargo().args(["build", "--profile", other, "-p", "test_loader"]).output().expect("run cargo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(if other == "dev" {
        "debug"
    } else {
        "release"
    });
    let dir = TestDir::new("othercore");
    let moddir = dir.path.join("mods");
    std::fs::create_dir_all(&moddir).unwrap();
    std::fs::copy(other_dir.join("libtest_loader.so"), moddir.join("libtest_loader.so")).unwrap();
    dir.write_starling_conf(&moddir, "");
    dir.write("modules.conf", "[modules]\nautoload = no\n");
    let server = Server::start(dir);
    let out = server.rx("module load test_loader.so");
    assert!(out.starts_with("Unable to load module test_loader.so"), "{out}");
    assert!(out.contains("built against another core"), "{out}");
    assert!(server.rx("module show").ends_with("0 modules loaded\n"));
    assert!(server.rx("core show version").starts_with("Starling"), "still running");
}

/// `static-modules` links the module crates into the binary: it runs with an empty moddir.
/// Built in a target folder of its own, so the binary the other tests run is left alone.
#[test]
fn static_modules_build_needs_no_moddir() {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/static-modules");
    let out = cargo()
        .args(["build", "--profile", profile(), "--bin", "starling", "--features", "static-modules", "--target-dir"])
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let binary = target.join(if profile() == "dev" { "debug" } else { "release" }).join("starling");
    let dir = TestDir::new("static");
    let empty = dir.path.join("no-modules-here");
    std::fs::create_dir_all(&empty).unwrap();
    dir.write_starling_conf(&empty, "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write("cli_aliases.conf", "[general]\ntemplate = t\n[t]\nver => core show version\n");
    let server = Server::spawn_binary(&binary, dir, &["-f"]);
    server.wait_ready();
    let show = server.rx("module show");
    assert!(show.contains("res_clialiases.so") && show.contains("func_strings.so"), "{show}");
    assert!(show.ends_with("22 modules loaded\n"), "pbx_config and chan_sip decline without their configs: {show}");
    assert!(server.rx("ver").starts_with("Starling "));
}

/// Libraries are never dlclosed: loading again maps nothing new, unless the file changed,
/// which maps a copy of the new file under a fresh path (a fresh set of statics).
#[test]
fn a_changed_module_file_is_mapped_afresh() {
    let dir = TestDir::new("remap");
    let mods = dir.path.join("mods");
    std::fs::create_dir_all(&mods).unwrap();
    let library = mods.join("libtest_loader.so");
    std::fs::copy(moddir().join("libtest_loader.so"), &library).unwrap();
    dir.write_starling_conf(&mods, "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
    let server = Server::start(dir);
    assert!(server.rx("test loader show").contains("loads_in_mapping=1"));
    server.rx("module unload test_loader");
    server.rx("module load test_loader");
    assert!(server.rx("test loader show").contains("loads_in_mapping=2"), "same file: same mapping");
    server.rx("module unload test_loader");
    // "Rebuild" it: a new file in place (new inode and time), as cargo writes one.
    std::fs::remove_file(&library).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::copy(moddir().join("libtest_loader.so"), &library).unwrap();
    assert_eq!(server.rx("module load test_loader"), "Loaded test_loader.so\n");
    assert!(server.rx("test loader show").contains("loads_in_mapping=1"), "a changed file is mapped afresh");
    let copies: Vec<_> = std::fs::read_dir(server.dir.path.join("run/modules")).unwrap().collect();
    assert!(copies.is_empty(), "the copy is unlinked once mapped: {copies:?}");
}
