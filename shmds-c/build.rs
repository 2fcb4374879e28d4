//! Gives `libshmds.so` a soname, so programs linked against an installed
//! copy (`make install`) record `libshmds.so.MAJOR` (`0.MINOR` while the
//! version is 0.x, whose minor releases may break the ABI) and find the
//! file `make install` puts under that name.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmds.so.{abi}");
    println!("cargo:rerun-if-changed=build.rs");
}
