//! Compiles the kernel half of the RTP relay (bpf/relay.bpf.c, see src/kernel.rs) with clang.
//! Without clang (or its BPF target, or libbpf's headers) the relay is built without it, with a
//! warning, and relays every packet in its threads.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kernel_relay)");
    println!("cargo::rerun-if-changed=bpf/relay.bpf.c");
    println!("cargo::rerun-if-env-changed=CLANG");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("relay.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Debian keeps <asm/types.h> under the multiarch directory.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-I", &multiarch, "-c", "bpf/relay.bpf.c", "-o"])
        .arg(&out)
        .output();
    match result {
        Ok(output) if output.status.success() => println!("cargo::rustc-cfg=kernel_relay"),
        Ok(output) => println!(
            "cargo::warning=starling-relay is built without its kernel RTP relay: {clang} failed on bpf/relay.bpf.c: {}",
            String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or("")
        ),
        Err(e) => println!("cargo::warning=starling-relay is built without its kernel RTP relay: no {clang} ({e})"),
    }
}
