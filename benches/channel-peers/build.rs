//! Records the rustc and iceoryx2 versions for the table's machine line.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    println!("cargo:rustc-env=RUSTC_VERSION={version}");

    // The iceoryx2 version actually built (from Cargo.lock).
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let iox = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"iceoryx2\"\n"))
        .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
        .map(|l| {
            l.trim_start_matches("version = ")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_else(|| "(unknown version)".into());
    println!("cargo:rustc-env=IOX2_VERSION={iox}");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
