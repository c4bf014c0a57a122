//! Makes `BUILD_ID`: the identity a module must share with the core that loads it.
//! It covers the compiler (`rustc -vV`), the target, the profile, the flags and features,
//! and a hash of the core's own sources, so a module built by another compiler or against
//! another core is refused at load time instead of crashing.

use std::{env, fs, path::Path, process::Command};

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

fn hash_dir(dir: &Path, hash: &mut u64) {
    let mut entries: Vec<_> =
        fs::read_dir(dir).expect("read core sources").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            hash_dir(&path, hash);
        } else {
            fnv1a(hash, path.to_string_lossy().as_bytes());
            fnv1a(hash, &fs::read(&path).expect("read core source"));
        }
    }
}

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap();
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version_line = version.lines().next().unwrap_or("rustc unknown").to_owned();

    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    fnv1a(&mut hash, version.as_bytes());
    for key in ["TARGET", "PROFILE", "OPT_LEVEL", "DEBUG", "CARGO_ENCODED_RUSTFLAGS"] {
        fnv1a(&mut hash, key.as_bytes());
        fnv1a(&mut hash, env::var(key).unwrap_or_default().as_bytes());
    }
    let mut features: Vec<_> = env::vars().map(|(k, _)| k).filter(|k| k.starts_with("CARGO_FEATURE_")).collect();
    features.sort();
    fnv1a(&mut hash, features.join(",").as_bytes());
    hash_dir(&Path::new(&manifest).join("src"), &mut hash);
    fnv1a(&mut hash, &fs::read(Path::new(&manifest).join("Cargo.toml")).unwrap());

    let id = format!(
        "starling-core {} {} {} {} {:016x}",
        env::var("CARGO_PKG_VERSION").unwrap(),
        version_line,
        env::var("TARGET").unwrap(),
        env::var("PROFILE").unwrap(),
        hash
    );
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("build_id.rs");
    fs::write(
        out,
        format!(
            "/// The identity of this build of the core; see build.rs.\n\
             pub const BUILD_ID: &str = {id:?};\n\
             /// `BUILD_ID` as a C string, for the `extern \"C\"` build-id symbol of modules.\n\
             pub const BUILD_ID_C: &std::ffi::CStr = c{id:?};\n\
             /// `BUILD_ID` with its NUL, for the `starling_build_id` section of modules.\n\
             pub const BUILD_ID_BYTES: [u8; {len}] = {bytes:?};\n",
            len = id.len() + 1,
            bytes = id.bytes().chain([0]).collect::<Vec<u8>>()
        ),
    )
    .unwrap();
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
